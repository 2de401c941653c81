// `nixboot deploy` end to end against a real sshd on 127.0.0.1: the real
// nixboot binary on both sides, the target a CheckRig whose reboot command
// records instead of rebooting; the test plays the trial boot (loader,
// stage 1, `nixboot check`) while the deploy waits for it.
#include "boot/deploy/options.hpp"
#include "boot/deploy/target_status.hpp"
#include "boot/util/error.hpp"
#include "tests/boot/deploy/sshd_rig.hpp"

#include "tests/catch.hpp"

#include <nlohmann/json.hpp>

#include <future>

using namespace nixboot;
using namespace nixboot::test;

namespace {

const std::string checks_dir = std::string(NIXBOOT_SOURCE_DIR) + "/deploy-checks";

enum class Format { text, json };

// A target (CheckRig) behind a real sshd, and a fleet file naming it.
struct Fleet {
    CheckRig c;
    std::string sshd, keygen;
    std::optional<Sshd> server;
    std::filesystem::path fleet = c.rig.tmp / "fleet.conf";
    std::filesystem::path deployer_checks = c.rig.tmp / "deployer-checks";

    void start(const std::string& sshd_path, const std::string& keygen_path) {
        server.emplace(c.rig.tmp / "sshd", sshd_path, keygen_path, write_target_shell(c));
        write_file(fleet, "# the test's fleet\nhosts = root@127.0.0.1\nssh-options = " + server->client_options() +
                              "\nconfirm-timeout = 120\nboot-timeout = 30\nsettle-timeout = 30\npoll-interval = 0.1\n"
                              "connect-timeout = 5\ncheck-timeout = 20\n");
        c.check_script("required/ok", "echo ok");
    }
    // `nixboot [--json] deploy --config FLEET ARGS...` in the background.
    std::future<RunResult> deploy(std::vector<std::string> args, std::vector<std::string> env = {},
                                  Format format = Format::text) {
        std::vector<std::string> argv{NIXBOOT_BIN, "--config", (c.rig.tmp / "none.conf").string()};
        if (format == Format::json) argv.emplace_back("--json");
        argv.insert(argv.end(), {"deploy", "--config", fleet.string()});
        write_file(c.rig.tmp / "none.conf", "");
        argv.insert(argv.end(), args.begin(), args.end());
        return std::async(std::launch::async, [argv, env] { return run_program(argv, env); });
    }
    // Waits (at most 30 s) until the target's reboot command ran `n` times.
    bool rebooted(std::size_t n = 1) {
        for (int i = 0; i < 600; ++i) {
            std::size_t count = 0;
            for (const auto& line : lines_of(read_or_empty(c.calls))) count += line.starts_with("reboot");
            if (count >= n) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }
    // The trial boot: the loader boots the one-shot, stage 1, the check opens the window.
    void trial_boot() {
        REQUIRE(c.boot() == "nixos-generation-3+0-1.conf");
        auto r = c.check();
        INFO(r.out << r.err);
        REQUIRE(r.status == 0);
    }
};

#define NEEDS_SSHD(fleet)                                            \
    NIXBOOT_SKIP_UNLESS_ROOT("sshd runs as root to log in as root"); \
    NIXBOOT_NEED_PROGRAM(sshd_path, "sshd");                         \
    NIXBOOT_NEED_PROGRAM(keygen_path, "ssh-keygen");                 \
    NIXBOOT_NEED_PROGRAM(ssh_path, "ssh");                           \
    (fleet).start(sshd_path, keygen_path)

}  // namespace

TEST_CASE("deploy: healthy trial boot, deployer checks pass, confirmed, promoted and reported", "[deploy][sshd]") {
    Fleet f;
    NEEDS_SSHD(f);
    write_script(f.deployer_checks / "env", "#!/bin/sh\necho \"$NIXBOOT_TARGET $NIXBOOT_GENERATION\" > '" +
                                                (f.c.rig.tmp / "check-env").string() + "'\n");
    auto deploy = f.deploy({"--check", checks_dir + "/ssh-reachable", "--check", checks_dir + "/tcp-port", "--check",
                            f.deployer_checks.string()},
                           {"NIXBOOT_CHECK_PORT=" + std::to_string(f.server->port)});
    REQUIRE(f.rebooted());
    f.trial_boot();
    auto r = deploy.get();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.starts_with("root@127.0.0.1: generation 3 promoted\n"));
    CHECK(r.out.ends_with("1 of 1 promoted\n"));
    CHECK(r.err.find("root@127.0.0.1: check ssh-reachable: a new ssh connection to root@127.0.0.1 runs commands") !=
          std::string::npos);
    CHECK(r.err.find("accepts connections on TCP port " + std::to_string(f.server->port)) != std::string::npos);
    CHECK(read_file(f.c.rig.tmp / "check-env") == "root@127.0.0.1 3\n");
    // The target: promoted by the confirm (G6), the default and the profile moved.
    CHECK(f.c.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(std::filesystem::read_symlink(f.c.rig.profile) == "system-3-link");
    CHECK(f.c.events_for(3) == std::vector<std::string>{"arm", "live-start", "good", "promote", "live-confirm"});
}

TEST_CASE("deploy: a deployer check fails, live-revert is sent, the rollback is reported", "[deploy][sshd]") {
    Fleet f;
    NEEDS_SSHD(f);
    write_script(f.deployer_checks / "web", "#!/bin/sh\necho \"no answer from $NIXBOOT_TARGET_HOST:443\"\nexit 1\n");
    auto deploy = f.deploy({"--check", (f.deployer_checks / "web").string()}, {}, Format::json);
    REQUIRE(f.rebooted());
    f.trial_boot();
    auto r = deploy.get();
    INFO(r.out << r.err);
    CHECK(r.status == 1);
    const std::string reason = "deployer check web failed: no answer from 127.0.0.1:443 (exit status 1)";
    auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["targets"].size() == 1);
    CHECK(j["targets"][0]["outcome"] == "rolled back");
    CHECK(j["targets"][0]["generation"] == 3);
    CHECK(j["targets"][0]["previous"] == 2);
    CHECK(j["targets"][0]["line"] == "root@127.0.0.1: rolled back to 2: " + reason);
    CHECK(j["promoted"] == 0);
    // The target marked the trial bad with the deployer's reason and rebooted into the default.
    CHECK(f.rebooted(2));
    CHECK(f.c.reason_of(3, JournalEvent::live_revert) == reason);
    CHECK(f.c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(std::filesystem::read_symlink(f.c.rig.profile) == "system-2-link");
}

TEST_CASE("deploy: a live trial that fails the target's own checks is reported rolled back", "[deploy][sshd]") {
    Fleet f;
    NEEDS_SSHD(f);
    f.c.check_script("required/db", "echo 'db: connection refused'\nexit 1");
    auto r = f.deploy({"--live"}).get();
    INFO(r.out << r.err);
    CHECK(r.status == 1);
    CHECK_THAT(r.out, starts_with("root@127.0.0.1: rolled back to 2: live trial of generation 3: required check "
                                  "'db' failed (exit status 1)\n"));
    CHECK(f.c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(f.c.events_for(3).back() == "live-revert");
}

TEST_CASE("deploy: the target stops answering after the trial is armed: no confirm, reported, exit 1",
          "[deploy][sshd]") {
    Fleet f;
    NEEDS_SSHD(f);
    write_file(f.fleet, read_file(f.fleet) + "boot-timeout = 1\nsettle-timeout = 1\n");
    // The reboot takes sshd down with it, and the trial boot never lets us in again.
    write_script(f.c.reboot, "#!/bin/sh\necho \"reboot $*\" >> '" + f.c.calls.string() + "'\nkill " +
                                 std::to_string(f.server->pid) + "\n");
    auto deploy = f.deploy({});
    REQUIRE(f.rebooted());
    f.trial_boot();
    auto r = deploy.get();
    INFO(r.out << r.err);
    CHECK(r.status == 1);
    CHECK_THAT(r.out, starts_with("root@127.0.0.1: generation 3 not confirmed: no answer for "));
    CHECK(r.out.find(" s (ssh: connect to host 127.0.0.1 port ") != std::string::npos);
    CHECK(r.out.find("; it returns to 2 by itself\n") != std::string::npos);
    // Nothing confirmed: the trial still waits, and its own timer reverts it (G6).
    auto live = read_or_empty(f.c.rig.state / "live");
    CHECK(live.find("status=running") != std::string::npos);
    CHECK(f.c.rig.pinned_good_default() == "nixos-generation-2");
}

TEST_CASE("deploy: two targets in parallel, live trials: both promoted, one line each and the table",
          "[deploy][sshd]") {
    Fleet a, b;
    NEEDS_SSHD(a);
    b.start(sshd_path, keygen_path);
    // One fleet file for both: a host alias per sshd (ssh's own config), so
    // both hosts share one set of ssh options.
    write_file(a.c.rig.tmp / "ssh_config", "Host a\n  HostName 127.0.0.1\n  User root\n  Port " +
                                               std::to_string(a.server->port) + "\n  IdentityFile " +
                                               (a.server->dir / "client_key").string() +
                                               "\nHost b\n  HostName "
                                               "127.0.0.1\n  User root\n  Port " +
                                               std::to_string(b.server->port) + "\n  IdentityFile " +
                                               (b.server->dir / "client_key").string() + "\n");
    const auto pushed = a.c.rig.tmp / "pushed";
    write_file(a.fleet, "hosts = a b\nmode = live\nparallel = 2\npoll-interval = 0.1\npush = echo pushed {host} >> '" +
                            pushed.string() + "'\nssh-options = -F " + (a.c.rig.tmp / "ssh_config").string() +
                            " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR\n");
    auto r = a.deploy({"--check", checks_dir + "/ssh-reachable"}).get();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    auto lines = lines_of(r.out);
    REQUIRE(lines.size() == 7);
    std::vector<std::string> first{lines[0], lines[1]};
    std::sort(first.begin(), first.end());
    CHECK(first == std::vector<std::string>{"a: generation 3 promoted", "b: generation 3 promoted"});
    CHECK(lines[3] == "HOST  GENERATION  OUTCOME       DETAIL");
    CHECK(lines[4] == "a     3           promoted      ");
    CHECK(lines[5] == "b     3           promoted      ");
    CHECK(lines[6] == "2 of 2 promoted");
    auto push_lines = lines_of(read_file(pushed));
    std::sort(push_lines.begin(), push_lines.end());
    CHECK(push_lines == std::vector<std::string>{"pushed a", "pushed b"});
    for (Fleet* f : {&a, &b}) {
        CHECK(f->c.rig.pinned_good_default() == "nixos-generation-3");
        CHECK(f->c.events_for(3).back() == "live-confirm");
    }
}

TEST_CASE("deploy: an unreachable target (nothing listening) is left alone and reported, exit 1", "[deploy]") {
    NIXBOOT_NEED_PROGRAM(ssh_path, "ssh");
    TempDir tmp;
    write_file(tmp / "none.conf", "");
    const int port = free_port();
    auto r = run_program({NIXBOOT_BIN, "--config", (tmp / "none.conf").string(), "deploy", "--ssh-options",
                          "-F /dev/null -p " + std::to_string(port), "--poll-interval", "0.1", "root@127.0.0.1"});
    CHECK(r.status == 1);
    CHECK(r.out.starts_with("root@127.0.0.1: unreachable, nothing deployed: ssh: connect to host 127.0.0.1 port " +
                            std::to_string(port) + ": Connection refused\n"));
    CHECK(r.out.ends_with("0 of 1 promoted\n"));
}

TEST_CASE("deploy: bad input is one line and exit 2, before any connection", "[deploy][bad-input]") {
    TempDir tmp;
    write_file(tmp / "fleet.conf", "hosts = web1 web2\n");
    write_file(tmp / "bad.conf", "hosts = web1\nparallel = lots\n");
    auto run = [&](std::vector<std::string> args) {
        std::vector<std::string> argv{NIXBOOT_BIN, "--config", (tmp / "none.conf").string(), "deploy"};
        argv.insert(argv.end(), args.begin(), args.end());
        // An ssh that would record any connection attempt.
        return run_program(argv, {"NIXBOOT_SSH_PROGRAM=" + (tmp / "no-ssh").string()});
    };
    write_file(tmp / "none.conf", "");
    auto expect = [&](std::vector<std::string> args, const std::string& err) {
        auto r = run(args);
        CHECK(r.status == 2);
        CHECK(r.err == err);
        CHECK(r.out.empty());
    };
    const std::string fleet = (tmp / "fleet.conf").string();
    expect({"--config", fleet, "web3"}, "nixboot: deploy: host 'web3' is not in " + fleet + " (hosts: web1 web2)\n");
    expect({"--confirm-timeout", "soon", "web1"},
           "nixboot: deploy: --confirm-timeout: 'soon' is not a number from 1 to 86400\n");
    expect({"--config", (tmp / "bad.conf").string()},
           "nixboot: deploy: " + (tmp / "bad.conf").string() + ":2: parallel: 'lots' is not a number from 1 to 1000\n");
    expect({}, "nixboot: deploy: no host given (HOST... or 'hosts =' in a --config file)\n");
    expect({"--live", "--reboot", "web1"}, "nixboot: deploy: --live and --reboot exclude each other\n");
    expect({"--check", (tmp / "missing").string(), "web1"},
           "nixboot: deploy: check '" + (tmp / "missing").string() + "': No such file or directory\n");
    write_file(tmp / "option.conf", "hosts = web1 -oProxyCommand=x\n");
    expect({"--config", (tmp / "option.conf").string()},
           "nixboot: deploy: host '-oProxyCommand=x': starts with '-' (ssh would read an option)\n");
    CHECK_FALSE(std::filesystem::exists(tmp / "no-ssh"));
}

TEST_CASE("deploy: the target's status as the deployer reads it", "[deploy]") {
    const std::string armed =
        R"({"default":"nixos-generation-2","entries":[)"
        R"({"id":"nixos-generation-3","generation":3,"specialisation":null,"state":"trial"},)"
        R"({"id":"nixos-generation-3-specialisation-x","generation":3,"specialisation":"x","state":"trial"},)"
        R"({"id":"nixos-generation-2","generation":2,"specialisation":null,"state":"good"},)"
        R"({"id":"nixos-generation-1","generation":1,"specialisation":null,"state":"bad"}],)"
        R"("live_trial":{"id":"abc","generation":3,"kind":"reboot","status":"running","awaiting_confirm":true,)"
        R"("confirm_timeout":120,"deadline":5},"rolled_back":null})";
    auto s = deploy::parse_target_status(armed);
    CHECK(deploy::newest_untried(s) == 3u);
    CHECK(deploy::default_generation(s) == 2u);
    CHECK(deploy::observe(s, 3, "abc") == deploy::Seen::awaiting_confirm);
    CHECK(deploy::observe(s, 3, "other") == deploy::Seen::pending);
    CHECK(deploy::parse_trial_id(R"({"entry":"nixos-generation-3","trial_id":"0123456789abcdef0123456789abcdef"})") ==
          std::optional<std::string>("0123456789abcdef0123456789abcdef"));
    CHECK(deploy::parse_trial_id(R"({"trial_id":"../../x"})") == std::nullopt);
    CHECK(deploy::parse_trial_id("not json") == std::nullopt);
    CHECK_THROWS_WITH(deploy::parse_target_status("{\"entries\": 3"), starts_with("unreadable status: "));
    CHECK_THROWS_AS(deploy::parse_target_status("[]"), Error);
}
