// Two real `nixboot` commands started at the same instant against one
// temporary machine, round after round: the end state must be one a serial
// run gives (either order, or one command refused because the other held
// STATE/lock), the default good (G1), no good file lost (G4), every file
// parsing. The serial outcomes are computed by running the same commands one
// after the other on fresh machines.
#include "boot/util/lock.hpp"
#include "tests/boot/health/check_rig.hpp"
#include "tests/cli/rig.hpp"

#include "tests/catch.hpp"

#include <chrono>
#include <iostream>
#include <memory>
#include <set>

using namespace nixboot;
using nixboot::test::Rig;
using nixboot::test::run_program;
using nixboot::test::RunResult;

namespace {

constexpr unsigned rounds = 50;
const std::string lock_held = "another nixboot command is running";

std::vector<std::string> cmd(const Rig& rig, const std::filesystem::path& config, std::vector<std::string> rest) {
    std::vector<std::string> argv{NIXBOOT_BIN,          "--esp",     rig.esp.string(),     "--profile",
                                  rig.profile.string(), "--efivars", rig.efivars.string(), "--state",
                                  rig.state.string(),   "--config",  config.string()};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return argv;
}

// One machine and the two commands that race on it.
struct World {
    virtual ~World() = default;
    virtual const Rig& rig() const = 0;
    virtual std::vector<std::string> argv(int side) const = 0;
    virtual std::vector<std::string> env() const { return {}; }
};

// A systemd-boot machine of generations 1..3 (2 adopted as good) and two verbs.
struct VerbWorld : World {
    Rig r{3, "systemd-boot 252.39-1~deb12u1", 2};
    std::filesystem::path config = r.tmp / "nixboot.conf";
    std::array<std::vector<std::string>, 2> verbs;
    VerbWorld(std::vector<std::string> a, std::vector<std::string> b, std::vector<std::vector<std::string>> setup)
        : verbs{a, b} {
        test::write_file(config, "");
        REQUIRE(run_program(cmd(r, config, {"install"})).status == 0);
        for (const auto& s : setup) {
            auto res = run_program(cmd(r, config, s));
            INFO(res.err);
            REQUIRE(res.status == 0);
        }
    }
    const Rig& rig() const override { return r; }
    std::vector<std::string> argv(int side) const override { return cmd(r, config, verbs[side]); }
};

// `install` of a new generation 4 against the boot check promoting the
// booted trial of generation 3 (the check rig's options: fake /run,
// cmdline, uptime, watchdog file; never this machine's).
struct PromotionWorld : World {
    test::CheckRig c;
    PromotionWorld() {
        c.check_script("required/ok", "true");
        REQUIRE(c.nixboot({"try", "3"}).status == 0);
        REQUIRE(c.boot() == "nixos-generation-3+0-1.conf");
        test::make_generation(c.rig.store, c.rig.profile, 4);
    }
    const Rig& rig() const override { return c.rig; }
    std::vector<std::string> argv(int side) const override {
        if (side == 0)
            return cmd(
                c.rig, c.config,
                {"check", "--run", c.run.string(), "--cmdline", c.cmdline.string(), "--uptime", c.uptime.string()});
        return cmd(c.rig, c.config, {"install"});
    }
    std::vector<std::string> env() const override {
        return {"NIXBOOT_REBOOT_COMMAND=" + c.reboot.string(), "NIXBOOT_SYSTEMD_RUN=" + c.systemd_run.string(),
                "NIXBOOT_SYSTEMCTL=" + c.systemctl.string(),
                "NIXBOOT_CURRENT_SYSTEM=" + (c.rig.store / "system-2").string()};
    }
};

struct Serial {
    std::string both_a_first, both_b_first, only_a, only_b;
};

template <class Make>
Serial serial_outcomes(const Make& make) {
    Serial s;
    auto run_in = [](const World& w, std::initializer_list<int> sides) {
        for (int side : sides) {
            auto r = run_program(w.argv(side), w.env());
            INFO("side " << side << ": " << r.out << r.err);
            REQUIRE(r.status == 0);
        }
        return w.rig().summary();
    };
    s.both_a_first = run_in(*make(), {0, 1});
    s.both_b_first = run_in(*make(), {1, 0});
    s.only_a = run_in(*make(), {0});
    s.only_b = run_in(*make(), {1});
    return s;
}

// Runs `rounds` races; side `may_refuse[i]` may lose the lock (exit 1 naming
// it), the other must always succeed. Returns how many rounds ran both.
template <class Make>
unsigned race(const Make& make, std::array<bool, 2> may_refuse) {
    const Serial serial = serial_outcomes(make);
    unsigned both = 0;
    for (unsigned round = 0; round < rounds; ++round) {
        auto w = make();
        const Rig& rig = w->rig();
        const auto good_before = rig.good_files();
        auto r = test::run_together({w->argv(0), w->argv(1)}, w->env());
        INFO("round " << round << "\nA: " << r[0].status << " " << r[0].out << r[0].err << "\nB: " << r[1].status << " "
                      << r[1].out << r[1].err);
        std::set<std::string> allowed;
        if (r[0].status == 0 && r[1].status == 0) {
            allowed = {serial.both_a_first, serial.both_b_first};
            ++both;
        }
        for (int side : {0, 1}) {
            if (r[side].status == 0) continue;
            CHECK(may_refuse[side]);
            CHECK_THAT(r[side].err, nixboot::test::contains(lock_held));
            allowed.insert(side == 0 ? serial.only_b : serial.only_a);
        }
        const std::string now = rig.summary();
        INFO("end state:\n" << now);
        CHECK(allowed.count(now) == 1);
        CHECK(rig.pinned_good_default().front() != '<');  // G1
        const auto good_after = rig.good_files();
        for (const auto& [file, content] : good_before) {  // G4
            auto it = good_after.find(file);
            CHECK((it != good_after.end() && it->second == content));
        }
        CHECK(rig.unparsable() == "");
        CHECK(run_program(cmd(rig, rig.tmp / "nixboot.conf", {"--json", "status"}), w->env()).status == 0);
    }
    std::cout << "races: " << rounds << " rounds, " << both << " with both commands run" << std::endl;
    return both;
}

}  // namespace

TEST_CASE("races: install against the boot check's promotion ends in a serial outcome, the check never loses",
          "[races]") {
    // The check runs at boot, unattended: losing the lock to an install would
    // leave a passing trial unpromoted and its watchdog armed. It must wait.
    race([] { return std::make_unique<PromotionWorld>(); }, {false, true});
}

TEST_CASE("races: try against rollback ends in a serial outcome", "[races]") {
    race(
        [] {
            return std::make_unique<VerbWorld>(std::vector<std::string>{"try", "1"},
                                               std::vector<std::string>{"rollback"},
                                               std::vector<std::vector<std::string>>{{"mark-good", "3"}});
        },
        {true, true});
}

TEST_CASE("races: mark-good against mark-bad ends in a serial outcome", "[races]") {
    race(
        [] {
            return std::make_unique<VerbWorld>(std::vector<std::string>{"mark-good", "3"},
                                               std::vector<std::string>{"mark-bad", "3"},
                                               std::vector<std::vector<std::string>>{});
        },
        {true, true});
}

TEST_CASE("races: the boot check waits for a command holding the lock and then promotes", "[races]") {
    PromotionWorld w;
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t holder = ::fork();
    REQUIRE(holder >= 0);
    if (holder == 0) {  // an install that takes a while
        Lock held = Lock::acquire(w.c.rig.state);
        if (::write(ready[1], "x", 1) != 1) ::_exit(1);
        ::usleep(1000 * 1000);
        ::_exit(0);
    }
    char byte = 0;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
    auto r = run_program(w.argv(0), w.env());
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(w.c.rig.pinned_good_default() == "nixos-generation-3");
    int status = 0;
    ::waitpid(holder, &status, 0);
    ::close(ready[0]);
    ::close(ready[1]);
}
