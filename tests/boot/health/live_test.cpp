// Live trials end to end: `nixboot try --live`, `confirm`, the revert command
// the timer would run, and the next boot's settling, with systemd-run,
// systemctl and every generation's switch-to-configuration replaced by
// scripts that record their calls in order.
#include "boot/health/live.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/health/check_rig.hpp"

#include "tests/catch.hpp"

#include <nlohmann/json.hpp>

#include <thread>

using namespace nixboot;
using namespace nixboot::health;
using namespace nixboot::test;

namespace {

// The argv the revert timer was given: everything after --on-active=S.
std::vector<std::string> timer_command(const std::string& calls) {
    for (const auto& line : lines_of(calls)) {
        if (!line.starts_with("systemd-run ")) continue;
        std::vector<std::string> words;
        std::size_t pos = 0;
        while (pos < line.size()) {
            auto sp = line.find(' ', pos);
            if (sp == std::string::npos) sp = line.size();
            if (sp > pos) words.push_back(line.substr(pos, sp - pos));
            pos = sp + 1;
        }
        auto it = std::find_if(words.begin(), words.end(),
                               [](const std::string& w) { return w.starts_with("--on-active="); });
        if (it != words.end()) return {it + 1, words.end()};
    }
    return {};
}

}  // namespace

TEST_CASE("live: pair for STATE/live", "[health][live]") {
    LiveTrial t;
    t.status = LiveStatus::confirmed;
    t.generation = 3;
    t.previous = 2;
    t.previous_toplevel = "/nix/store/abc-nixos-system";
    t.boot_id = "0b7c4a4e-7a53-4a4e-9c1c-8a3f1c2b9d10";
    t.started = 1700000000;
    t.deadline = 1700000300;
    t.unit = "nixboot-live-revert-3";
    CHECK(parse_live_trial(format_live_trial(t), "live") == t);  // a trial from before IDs
    t.id = "0123456789abcdef0123456789abcdef";
    CHECK(format_live_trial(t).ends_with("\nid=0123456789abcdef0123456789abcdef\n"));
    CHECK(parse_live_trial(format_live_trial(t), "live") == t);
    CHECK_THROWS_WITH(parse_live_trial("generation=3\nid=XYZ\n", "live"), "live:2: bad value 'XYZ' for 'id'");
    CHECK_THROWS_WITH(parse_live_trial("generation=x\n", "/var/lib/nixboot/live"),
                      "/var/lib/nixboot/live:1: bad value 'x' for 'generation'");
    CHECK_THROWS_WITH(parse_live_trial("status=done\ngeneration=3\n", "live"), "live:1: bad value 'done' for 'status'");
    CHECK_THROWS_WITH(parse_live_trial("previous=2\n", "live"), "live: no 'generation'");
}

TEST_CASE("live: confirmed from a new invocation promotes, the timer is set before activation", "[health][live][cli]") {
    CheckRig c;
    c.check_script("required/ok", "echo ok");
    auto r = c.nixboot({"try", "--live", "3", "--confirm-timeout", "60"});
    INFO(r.out << r.err);
    REQUIRE(r.status == 0);
    const auto trial_id = parse_live_trial(read_file(c.rig.state / "live"), "live").id;
    CHECK(trial_id.size() == 32);
    CHECK(r.out.find("generation 3 is live as trial " + trial_id + "; run 'nixboot confirm " + trial_id +
                     "' from a new connection within 60 s") != std::string::npos);
    auto st = nlohmann::json::parse(c.nixboot({"--json", "status"}).out);
    CHECK(st["live_trial"]["id"] == trial_id);
    CHECK(st["live_trial"]["generation"] == 3);
    CHECK(st["live_trial"]["status"] == "running");
    auto calls = lines_of(read_file(c.calls));
    REQUIRE(calls.size() == 2);
    CHECK(
        calls[0].starts_with("systemd-run --collect --timer-property=AccuracySec=1s --unit=nixboot-live-revert-3 "
                             "--on-active=60 " +
                             std::string(NIXBOOT_BIN)));
    CHECK(calls[0].ends_with(" live-revert"));
    CHECK(calls[1] == "switch-3 test");
    // The bootloader default never moved during the window.
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-2-link");
    CHECK(std::filesystem::exists(c.rig.state / "live"));

    // a confirm that names another trial confirms nothing
    const auto before = c.rig.snapshot();
    auto other = c.nixboot({"confirm", "ffffffffffffffffffffffffffffffff"});
    CHECK(other.status == 1);
    CHECK(other.err ==
          "nixboot: confirm: this confirm names trial ffffffffffffffffffffffffffffffff, but the running "
          "live trial (generation 3) is " +
              trial_id + "; nothing confirmed\n");
    CHECK(c.rig.snapshot() == before);
    CHECK(c.nixboot({"confirm", "not-an-id"}).status == 2);
    auto confirm = c.nixboot({"confirm", trial_id});
    INFO(confirm.out << confirm.err);
    CHECK(confirm.status == 0);
    CHECK(confirm.out == "generation 3 confirmed: it is good, the default and the system profile\n");
    CHECK(lines_of(read_file(c.calls)).back() == "systemctl stop nixboot-live-revert-3.timer");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-3-link");
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    auto ev = c.events_for(3);
    CHECK(std::find(ev.begin(), ev.end(), "live-start") != ev.end());
    CHECK(ev.back() == "live-confirm");
    CHECK(std::count(ev.begin(), ev.end(), "bad") == 0);
    // Replayed, the confirm says what became of its trial.
    auto replay = c.nixboot({"confirm", trial_id});
    CHECK(replay.status == 1);
    CHECK(
        replay.err.starts_with("nixboot: confirm: no live trial is running: trial " + trial_id + " was confirmed at "));
    // The timer firing late finds nothing to revert.
    auto late = run_program(timer_command(read_file(c.calls)));
    CHECK(late.status == 0);
    CHECK(late.out == "no live trial to revert (already confirmed or reverted)\n");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
}

TEST_CASE("live: no confirm in time: the timer's command reverts and marks the generation bad", "[health][live][cli]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    REQUIRE(c.nixboot({"try", "--live", "3", "--confirm-timeout", "60"}).status == 0);
    auto cmd = timer_command(read_file(c.calls));
    REQUIRE_FALSE(cmd.empty());
    auto r = run_program(cmd, {"NIXBOOT_SYSTEMCTL=" + c.systemctl.string()});
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out ==
          "reverted: generation 2 is active again, generation 3 is marked bad (live trial of generation 3 "
          "was not confirmed within 60 s)\n");
    auto calls = lines_of(read_file(c.calls));
    REQUIRE(calls.size() == 4);
    CHECK(calls[2] == "switch-2 test");
    CHECK(calls[3] == "systemctl stop nixboot-live-revert-3.timer");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-2-link");
    CHECK(c.reason_of(3, JournalEvent::live_revert) == "live trial of generation 3 was not confirmed within 60 s");
    CHECK(std::filesystem::exists(c.rig.esp / "loader/entries/nixos-generation-3+0-0.conf"));
    // A confirm afterwards: one clear line, nothing changed.
    auto before = c.rig.snapshot();
    auto confirm = c.nixboot({"confirm"});
    CHECK(confirm.status == 1);
    CHECK(confirm.err.find("confirm: no live trial is running") != std::string::npos);
    CHECK(c.rig.snapshot() == before);
}

TEST_CASE("live: a failing required check reverts at once", "[health][live][cli]") {
    CheckRig c;
    c.check_script("required/web", "echo 'http 502'; exit 1");
    auto r = c.nixboot({"try", "--live", "3", "--confirm-timeout", "60"});
    CHECK(r.status == 1);
    CHECK(r.out.find("web: http 502") != std::string::npos);
    CHECK(r.err.find("live trial of generation 3 reverted: live trial of generation 3: required check 'web' failed "
                     "(exit status 1)") != std::string::npos);
    auto calls = lines_of(read_file(c.calls));
    REQUIRE(calls.size() == 4);
    CHECK(calls[1] == "switch-3 test");
    CHECK(calls[2] == "switch-2 test");
    CHECK(calls[3] == "systemctl stop nixboot-live-revert-3.timer");
    CHECK(c.events_for(3).back() == "live-revert");
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
}

TEST_CASE("live: a failing activation reverts at once", "[health][live][cli]") {
    CheckRig c;
    write_recorder(c.rig.store / "system-3/bin/switch-to-configuration", c.calls, "switch-3", 4);
    auto r = c.nixboot({"try", "--live", "3"});
    CHECK(r.status == 1);
    CHECK(r.err.find("activating generation 3: '" + (c.rig.store / "system-3/bin/switch-to-configuration").string() +
                     " test' failed (exit status 4)") != std::string::npos);
    CHECK(lines_of(read_file(c.calls))[2] == "switch-2 test");
}

TEST_CASE("live: bad input changes nothing", "[health][live][cli][bad-input]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    SECTION("confirm with no live trial") {
        auto before = c.rig.snapshot();
        auto r = c.nixboot({"confirm"});
        CHECK(r.status == 1);
        CHECK(r.err.find("confirm: no live trial is running") != std::string::npos);
        CHECK(c.rig.snapshot() == before);
    }
    SECTION("a second try --live while one runs") {
        REQUIRE(c.nixboot({"try", "--live", "3"}).status == 0);
        auto calls = read_file(c.calls);
        auto before = c.rig.snapshot();
        auto r = c.nixboot({"try", "--live", "1"});
        CHECK(r.status == 1);
        CHECK(r.err.find("a live trial of generation 3 is already running (until ") != std::string::npos);
        CHECK(r.err.find("); confirm it with 'nixboot confirm' or wait for its revert") != std::string::npos);
        CHECK(read_file(c.calls) == calls);
        CHECK(c.rig.snapshot() == before);
    }
    SECTION("the running generation") {
        auto r = c.nixboot({"try", "--live", "2"});
        CHECK(r.status == 1);
        CHECK(r.err.find("generation 2 is already the running system") != std::string::npos);
        CHECK(read_or_empty(c.calls).empty());
    }
    SECTION("systemd-run fails: nothing is activated") {
        write_recorder(c.systemd_run, c.calls, "systemd-run", 1);
        auto before = c.rig.snapshot();
        auto r = c.nixboot({"try", "--live", "3"});
        CHECK(r.status == 1);
        CHECK(r.err.find("' failed (exit status 1); nothing activated") != std::string::npos);
        CHECK(lines_of(read_file(c.calls)).size() == 1);
        CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    }
    SECTION("confirm after the deadline is refused; the revert owns it") {
        REQUIRE(c.nixboot({"try", "--live", "3", "--confirm-timeout", "1"}).status == 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(2100));
        auto r = c.nixboot({"confirm"});
        CHECK(r.status == 1);
        CHECK(r.err.find("passed its confirm deadline") != std::string::npos);
        CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    }
}

TEST_CASE("live: a reboot during the window boots the old default, the next check records the revert",
          "[health][live][cli]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    REQUIRE(c.nixboot({"try", "--live", "3"}).status == 0);
    // Power cycle: the loader's default never moved, and the boot id changes.
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto live = read_file(c.rig.state / "live");
    auto p = live.find("boot-id=");
    live.replace(p, live.find('\n', p) - p, "boot-id=00000000-0000-0000-0000-000000000000");
    write_file(c.rig.state / "live", live);
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("marked bad: nixos-generation-3: live trial of generation 3 was cut short by a reboot; booted "
                     "the default instead\n") != std::string::npos);
    // systemd-run, switch-3, systemctl stop: no re-activation; then the rollback is announced
    const auto calls = lines_of(read_file(c.calls));
    REQUIRE(calls.size() == 4);
    CHECK(calls[3] == "systemctl start --no-block nixboot-rolled-back.target");
    CHECK(c.events_for(3).back() == "live-revert");
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
}

TEST_CASE("live: a confirm interrupted after it was recorded is finished by the timer, not reverted",
          "[health][live][cli][idempotence]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    REQUIRE(c.nixboot({"try", "--live", "3"}).status == 0);
    auto live = read_file(c.rig.state / "live");
    live.replace(live.find("status=running"), 14, "status=confirmed");
    write_file(c.rig.state / "live", live);
    auto r = run_program(timer_command(read_file(c.calls)), {"NIXBOOT_SYSTEMCTL=" + c.systemctl.string()});
    CHECK(r.status == 0);
    CHECK(r.out == "the live trial was confirmed meanwhile; nothing reverted\n");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
    auto ev = c.events_for(3);
    CHECK(std::count(ev.begin(), ev.end(), "bad") == 0);
    CHECK(ev.back() == "live-confirm");
}
