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
    CHECK(replay.err.starts_with("nixboot: confirm: no trial waits for a confirmation: live trial " + trial_id +
                                 " of generation 3 was confirmed at "));
    // The timer firing late finds nothing to revert.
    auto late = run_program(timer_command(read_file(c.calls)));
    CHECK(late.status == 0);
    CHECK(late.out == "no trial to revert (already confirmed or reverted)\n");
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
    CHECK(confirm.err ==
          "nixboot: confirm: no trial waits for a confirmation (no live trial runs, no trial boot "
          "waits)\n");
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
        CHECK(r.err ==
              "nixboot: confirm: no trial waits for a confirmation (no live trial runs, no trial boot waits)\n");
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
    CHECK(r.out == "the trial was confirmed meanwhile; nothing reverted\n");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
    auto ev = c.events_for(3);
    CHECK(std::count(ev.begin(), ev.end(), "bad") == 0);
    CHECK(ev.back() == "live-confirm");
}

// Trials that wait across a reboot: `try GEN --reboot --confirm-timeout S`,
// the trial boot's check, `confirm`, the timer's command and the next boot.
namespace {

// Armed with a confirm, booted, checked: the trial waits. Returns its ID.
// Arms generation 3 as a reboot trial that waits `timeout` s for its confirm
// and boots it (the check not run yet); returns the trial ID.
std::string arm_and_boot_confirm_trial(CheckRig& c, const std::string& timeout = "120") {
    auto t = c.nixboot({"--json", "try", "3", "--reboot", "--confirm-timeout", timeout});
    INFO(t.out << t.err);
    REQUIRE(t.status == 0);
    const std::string id = nlohmann::json::parse(t.out)["trial_id"];
    REQUIRE(c.boot() == "nixos-generation-3+0-1.conf");
    return id;
}

std::string boot_awaiting_trial(CheckRig& c, const std::string& timeout = "120") {
    c.check_script("required/ok", "echo ok");
    const std::string id = arm_and_boot_confirm_trial(c, timeout);
    auto r = c.check();
    INFO(r.out << r.err);
    REQUIRE(r.status == 0);
    return id;
}

// A power cycle as far as STATE/live can tell: another boot id.
void forget_boot_id(CheckRig& c) {
    auto live = read_file(c.rig.state / "live");
    auto p = live.find("boot-id=");
    live.replace(p, live.find('\n', p) - p, "boot-id=00000000-0000-0000-0000-000000000000");
    write_file(c.rig.state / "live", live);
}

}  // namespace

TEST_CASE("confirm trial: pair for STATE/live with kind and window", "[health][live][confirm]") {
    LiveTrial t;
    t.kind = TrialKind::reboot;
    t.status = LiveStatus::armed;
    t.generation = 3;
    t.boot_id = "0b7c4a4e-7a53-4a4e-9c1c-8a3f1c2b9d10";
    t.started = 1700000000;
    t.unit = "nixboot-confirm-revert-3";
    t.id = "0123456789abcdef0123456789abcdef";
    t.window = 120;
    CHECK(format_live_trial(t).starts_with("status=armed\n"));
    CHECK(format_live_trial(t).ends_with("\nkind=reboot\nwindow=120\n"));
    CHECK(parse_live_trial(format_live_trial(t), "live") == t);
    CHECK_THROWS_WITH(parse_live_trial("generation=3\nkind=later\n", "live"), "live:2: bad value 'later' for 'kind'");
    CHECK_THROWS_WITH(parse_live_trial("generation=3\nwindow=86401\n", "live"),
                      "live:2: bad value '86401' for 'window'");
}

TEST_CASE("confirm trial: its checks pass on the trial boot, nothing is promoted, the timer is set",
          "[health][live][confirm][cli]") {
    CheckRig c;
    c.check_script("required/ok", "echo ok");
    auto t = c.nixboot({"try", "3", "--reboot", "--confirm-timeout", "120"});
    INFO(t.out << t.err);
    REQUIRE(t.status == 0);
    const auto armed = parse_live_trial(read_file(c.rig.state / "live"), "live");
    const std::string id = armed.id;
    CHECK(id.size() == 32);
    CHECK(armed.status == LiveStatus::armed);
    CHECK(t.out == "armed nixos-generation-3 as a one-shot trial (1 try); it falls back to nixos-generation-2\ntrial " +
                       id + ": once its checks pass on the trial boot, run 'nixboot confirm " + id +
                       "' from a new connection within 120 s, or it is marked bad and the machine reboots into "
                       "nixos-generation-2\n");
    CHECK(read_file(c.calls) == "reboot \n");
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "live-start"});
    auto st = nlohmann::json::parse(c.nixboot({"--json", "status"}).out);
    CHECK(st["live_trial"]["id"] == id);
    CHECK(st["live_trial"]["kind"] == "reboot");
    CHECK(st["live_trial"]["status"] == "armed");
    CHECK(st["live_trial"]["awaiting_confirm"] == false);
    CHECK(st["live_trial"]["deadline"].is_null());
    // Too early: the trial boot has not passed its checks.
    auto early = c.nixboot({"confirm", id});
    CHECK(early.status == 1);
    CHECK(early.err == "nixboot: confirm: trial " + id +
                           " of generation 3 has not passed its checks on its trial boot yet; nothing confirmed\n");

    CHECK(c.boot() == "nixos-generation-3+0-1.conf");
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    const auto waiting = parse_live_trial(read_file(c.rig.state / "live"), "live");
    CHECK(waiting.status == LiveStatus::running);
    CHECK(waiting.deadline == waiting.started + 120);
    CHECK(r.out.find("nixos-generation-3 passed its checks and waits for a confirmation from outside: run 'nixboot "
                     "confirm " +
                     id + "' within 120 s (by ") != std::string::npos);
    CHECK(r.out.find("), or it is marked bad and the machine reboots into the default\n") != std::string::npos);
    auto calls = lines_of(read_file(c.calls));
    REQUIRE(calls.size() == 2);
    CHECK(calls[1].starts_with(
        "systemd-run --collect --timer-property=AccuracySec=1s --unit=nixboot-confirm-revert-3 --on-active=120 " +
        std::string(NIXBOOT_BIN)));
    CHECK(calls[1].ends_with(" live-revert --run " + c.run.string()));
    // Not promoted; no verdict, so the watchdog stays armed and fed (stage 1's feed only).
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-2-link");
    CHECK_FALSE(std::filesystem::exists(c.run / "nixboot/verdict"));
    CHECK(read_file(c.watchdog) == ".");
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "live-start"});
    st = nlohmann::json::parse(c.nixboot({"--json", "status"}).out);
    CHECK(st["live_trial"]["status"] == "running");
    CHECK(st["live_trial"]["awaiting_confirm"] == true);
    CHECK(st["live_trial"]["deadline"] == waiting.deadline);
    CHECK(
        c.nixboot({"status"}).out.find("confirm:     generation 3 (trial " + id + ", awaiting confirm), confirm by ") !=
        std::string::npos);
    // A re-run of the check in the window decides nothing again.
    auto again = c.check();
    CHECK(again.status == 0);
    CHECK(again.out.find("nixos-generation-3 passed its checks (earlier in this boot) and waits for a confirmation") !=
          std::string::npos);
    CHECK(lines_of(read_file(c.calls)).size() == 2);
}

// nixboot-check.service runs `check --until-verdict`: while a trial boot
// waits for its confirm the check does not return, so boot-complete.target
// (and systemd-bless-boot after it) waits for nixboot's verdict.
TEST_CASE("confirm trial: check --until-verdict returns once the trial is confirmed (0) or reverted (1)",
          "[health][live][confirm][cli]") {
    for (const bool confirmed : {true, false}) {
        INFO((confirmed ? "confirmed" : "reverted"));
        CheckRig c;
        c.check_script("required/ok", "echo ok");
        const std::string id = arm_and_boot_confirm_trial(c);
        // From outside, once the window is open: the confirm, or the revert its timer runs.
        auto outside = c.argv(confirmed ? std::vector<std::string>{"confirm", id, "--run", c.run.string()}
                                        : std::vector<std::string>{"live-revert", "--run", c.run.string()});
        std::vector<std::string> waiter{"/bin/sh", "-c",
                                        "i=0; while ! grep -qx status=running \"$0\" 2>/dev/null; do i=$((i+1)); "
                                        "[ $i -lt 600 ] || exit 9; sleep 0.1; done; exec \"$@\"",
                                        (c.rig.state / "live").string()};
        waiter.insert(waiter.end(), outside.begin(), outside.end());
        auto check = c.check_args();
        check.push_back("--until-verdict");
        auto [r, o] = run_together({c.argv(check), waiter}, c.env());
        INFO(r.out << r.err << o.out << o.err);
        CHECK(o.status == 0);
        CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
        if (confirmed) {
            CHECK(r.status == 0);
            CHECK(r.out.ends_with("nixos-generation-3 was confirmed: it is good\n"));
            CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
        } else {
            CHECK(r.status == 1);
            CHECK(r.out.ends_with("nixos-generation-3 was not confirmed: it is not good\n"));
            CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
        }
    }
}

TEST_CASE("confirm trial: the window is cut to what is left of verdict-timeout", "[health][live][confirm][cli]") {
    CheckRig c;
    write_file(c.uptime, "550.00 40.00\n");
    c.check_script("required/ok", "echo ok");
    REQUIRE(c.nixboot({"try", "3", "--reboot", "--confirm-timeout", "120"}).status == 0);
    REQUIRE(c.boot() == "nixos-generation-3+0-1.conf");
    auto r = c.check();
    CHECK(r.status == 0);
    CHECK(r.out.find("note: the confirm window is cut to 50 s: the watchdog stops being fed at verdict-timeout (600 s "
                     "after boot)\n") != std::string::npos);
    CHECK(lines_of(read_file(c.calls)).back().find(" --on-active=50 ") != std::string::npos);
}

TEST_CASE("confirm trial: the confirm naming it promotes and stops the timer, others change nothing",
          "[health][live][confirm][cli]") {
    CheckRig c;
    const std::string id = boot_awaiting_trial(c);
    const auto before = c.rig.snapshot();
    auto other = c.nixboot({"confirm", "ffffffffffffffffffffffffffffffff", "--run", c.run.string()});
    CHECK(other.status == 1);
    CHECK(other.err ==
          "nixboot: confirm: this confirm names trial ffffffffffffffffffffffffffffffff, but the trial waiting for a "
          "confirmation (generation 3) is " +
              id + "; nothing confirmed\n");
    CHECK(c.rig.snapshot() == before);
    CHECK_FALSE(std::filesystem::exists(c.run / "nixboot/verdict"));

    auto confirm = c.nixboot({"confirm", id, "--run", c.run.string()});
    INFO(confirm.out << confirm.err);
    CHECK(confirm.status == 0);
    CHECK(confirm.out == "generation 3 confirmed: it is good, the default and the system profile\n");
    CHECK(lines_of(read_file(c.calls)).back() == "systemctl stop nixboot-confirm-revert-3.timer");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-3-link");
    CHECK(std::filesystem::exists(c.rig.esp / "loader/entries/nixos-generation-3.conf"));
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(read_file(c.run / "nixboot/verdict") == "good\ntrial boot of generation 3 confirmed from outside\n");
    CHECK(read_file(c.watchdog) == ".V");
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "live-start", "good", "promote", "live-confirm"});

    // Replayed: says what became of it, changes nothing.
    const auto after = c.rig.snapshot();
    auto replay = c.nixboot({"confirm", id, "--run", c.run.string()});
    CHECK(replay.status == 1);
    CHECK(replay.err.starts_with("nixboot: confirm: no trial waits for a confirmation: trial " + id +
                                 " of generation 3 was confirmed at "));
    CHECK(c.rig.snapshot() == after);
    // The timer firing anyway finds nothing; a re-run of the check keeps the verdict.
    auto late = run_program(timer_command(read_file(c.calls)), {"NIXBOOT_REBOOT_COMMAND=" + c.reboot.string()});
    CHECK(late.out == "no trial to revert (already confirmed or reverted)\n");
    auto again = c.check();
    CHECK(again.status == 0);
    CHECK(again.out.find("verdict on nixos-generation-3: good (decided earlier in this boot)") != std::string::npos);
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(read_or_empty(c.calls).find("reboot \n", 1) == std::string::npos);
}

TEST_CASE("confirm trial: a confirm after the deadline is refused and changes nothing",
          "[health][live][confirm][cli]") {
    CheckRig c;
    const std::string id = boot_awaiting_trial(c, "1");
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    const auto before = c.rig.snapshot();
    auto r = c.nixboot({"confirm", id, "--run", c.run.string()});
    CHECK(r.status == 1);
    CHECK(r.err.starts_with("nixboot: confirm: trial " + id + " of generation 3 passed its confirm deadline ("));
    CHECK(r.err.ends_with("); it is being reverted\n"));
    CHECK(c.rig.snapshot() == before);
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    // The check re-run past the deadline reverts it itself (the timer did not come).
    auto again = c.check();
    CHECK(again.status == 1);
    CHECK(again.out.find("verdict on nixos-generation-3: bad (decided earlier in this boot): trial boot of generation "
                         "3: no confirmation from outside within 1 s\n") != std::string::npos);
    CHECK(lines_of(read_file(c.calls)).back() == "reboot ");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
}

TEST_CASE("confirm trial: no confirm in time: the timer marks it bad and reboots into the default",
          "[health][live][confirm][cli]") {
    CheckRig c("on-failure = stay\n");  // G6 reboots whatever on-failure says
    boot_awaiting_trial(c);
    auto cmd = timer_command(read_file(c.calls));
    REQUIRE_FALSE(cmd.empty());
    auto r =
        run_program(cmd, {"NIXBOOT_SYSTEMCTL=" + c.systemctl.string(), "NIXBOOT_REBOOT_COMMAND=" + c.reboot.string()});
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out ==
          "generation 3 is marked bad (trial boot of generation 3: no confirmation from outside within 120 s); "
          "rebooting into the default: " +
              c.reboot.string() + "\n");
    auto calls = lines_of(read_file(c.calls));
    REQUIRE(calls.size() == 4);
    CHECK(calls[2] == "systemctl stop nixboot-confirm-revert-3.timer");
    CHECK(calls[3] == "reboot ");
    const std::string reason = "trial boot of generation 3: no confirmation from outside within 120 s";
    CHECK(c.reason_of(3, JournalEvent::bad) == reason);
    CHECK(c.reason_of(3, JournalEvent::live_revert) == reason);
    CHECK(read_file(c.run / "nixboot/verdict") == "bad\n" + reason + "\n");
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-2-link");
    // The reboot lands on the default, which says it rolled back.
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto next = c.check();
    CHECK(next.status == 0);
    CHECK(next.out.find("rolled back: generation 3 was rolled back at ") != std::string::npos);
    CHECK(next.out.find("marked bad:") == std::string::npos);
}

TEST_CASE("confirm trial: a reboot during the window boots the default, the next check marks the trial bad",
          "[health][live][confirm][cli]") {
    CheckRig c;
    const std::string id = boot_awaiting_trial(c);
    CHECK(c.boot() == "nixos-generation-2.conf");
    forget_boot_id(c);
    // A confirm in the new boot, before the check settled it: refused.
    auto confirm = c.nixboot({"confirm", id, "--run", c.run.string()});
    CHECK(confirm.status == 1);
    CHECK(confirm.err == "nixboot: confirm: trial " + id +
                             " of generation 3 was cut short by a reboot; the next check marks it bad; nothing "
                             "confirmed\n");
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    const std::string reason =
        "trial boot of generation 3 was cut short by a reboot while it waited for a confirmation; booted the default "
        "instead";
    CHECK(r.out.find("marked bad: nixos-generation-3: " + reason + "\n") != std::string::npos);
    CHECK(c.reason_of(3, JournalEvent::bad) == reason);
    CHECK(c.events_for(3).back() == "live-revert");
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(lines_of(read_file(c.calls)).back() == "systemctl start --no-block nixboot-rolled-back.target");
}

TEST_CASE("confirm trial: a trial boot that never reached its check is settled bad by the next boot",
          "[health][live][confirm][cli]") {
    CheckRig c;
    c.check_script("required/ok", "echo ok");
    REQUIRE(c.nixboot({"try", "3", "--reboot", "--confirm-timeout", "120"}).status == 0);
    CHECK(c.boot() == "nixos-generation-3+0-1.conf");  // hangs; the watchdog resets it
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("marked bad: nixos-generation-3: trial boot of generation 3 did not reach a verdict; booted "
                     "generation 2 instead\n") != std::string::npos);
    CHECK(c.events_for(3).back() == "live-revert");
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
}

TEST_CASE("confirm trial: failing checks on the trial boot mark it bad, and a confirm afterwards says so",
          "[health][live][confirm][cli]") {
    CheckRig c;
    c.check_script("required/web", "echo 'http 502'; exit 1");
    const std::string id = arm_and_boot_confirm_trial(c);
    auto r = c.check();
    CHECK(r.status == 1);
    CHECK(r.out.find("verdict on nixos-generation-3: bad: required check 'web' failed (exit status 1)\n") !=
          std::string::npos);
    CHECK(lines_of(read_file(c.calls)).back() == "reboot ");
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(c.events_for(3).back() == "live-revert");
    auto confirm = c.nixboot({"confirm", id, "--run", c.run.string()});
    CHECK(confirm.status == 1);
    CHECK(confirm.err.starts_with("nixboot: confirm: no trial waits for a confirmation: trial " + id +
                                  " of generation 3 was reverted at "));
    CHECK(confirm.err.ends_with(": trial boot of nixos-generation-3: required check 'web' failed (exit status 1)\n"));
}

TEST_CASE("confirm trial: bad input changes nothing", "[health][live][confirm][cli][bad-input]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    SECTION("a second trial while one waits for its confirm") {
        REQUIRE(c.nixboot({"--json", "try", "3", "--reboot", "--confirm-timeout", "120"}).status == 0);
        const auto id = parse_live_trial(read_file(c.rig.state / "live"), "live").id;
        const auto before = c.rig.snapshot();
        for (std::vector<std::string> args :
             {std::vector<std::string>{"try", "1", "--reboot", "--confirm-timeout", "60"},
              std::vector<std::string>{"try", "--live", "1"}}) {
            auto r = c.nixboot(args);
            CHECK(r.status == 1);
            CHECK(r.err == "nixboot: trial " + id +
                               " of generation 3 is armed and waits for its trial boot; reboot to run it, or cancel "
                               "it with 'nixboot live-revert' (marks generation 3 bad, no reboot)\n");
        }
        CHECK(c.rig.snapshot() == before);
    }
    SECTION("an arm that fails records nothing") {
        auto r = c.nixboot({"try", "7", "--reboot", "--confirm-timeout", "60"});
        CHECK(r.status == 1);
        CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
        CHECK(read_or_empty(c.calls).empty());
    }
    SECTION("--confirm-timeout without --reboot or --live is a usage error") {
        const auto before = c.rig.snapshot();
        auto r = c.nixboot({"try", "3", "--confirm-timeout", "60"});
        CHECK(r.status == 2);
        CHECK(r.err == "nixboot: try: --confirm-timeout needs --live or --reboot\n");
        CHECK(c.rig.snapshot() == before);
    }
    SECTION("--tries N>1 with --confirm-timeout is a usage error: a reset in the window must fall back") {
        const auto before = c.rig.snapshot();
        auto r = c.nixboot({"try", "3", "--reboot", "--confirm-timeout", "60", "--tries", "2"});
        CHECK(r.status == 2);
        CHECK(r.err == "nixboot: try: --confirm-timeout with --reboot is one try; --tries 2 is not allowed with it\n");
        CHECK(c.rig.snapshot() == before);
    }
    SECTION("try --help shows it") {
        auto r = c.nixboot({"try", "--help"});
        CHECK(r.status == 0);
        CHECK(r.out.find("with --reboot the trial boot waits that long") != std::string::npos);
    }
}

TEST_CASE("confirm trial: one try whatever the config says, and an armed trial is cancelled without a reboot",
          "[health][live][confirm][cli]") {
    CheckRig c("tries = 3\n");
    auto t = c.nixboot({"--json", "try", "3", "--reboot", "--confirm-timeout", "120"});
    REQUIRE(t.status == 0);
    CHECK(nlohmann::json::parse(t.out)["tries"] == 1);
    CHECK(lines_of(read_file(c.calls)) == std::vector<std::string>{"reboot "});
    auto r = c.nixboot({"live-revert"});
    CHECK(r.status == 0);
    CHECK(r.out.find("generation 3 is marked bad") != std::string::npos);
    const auto calls = lines_of(read_file(c.calls));
    CHECK(std::count(calls.begin(), calls.end(), "reboot ") == 1);  // try's own; the cancel does not reboot
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(c.boot() == "nixos-generation-2.conf");  // the default, not the cancelled trial
}

// A human's verdict (mark-good, mark-bad, rollback) settles the trial that
// waits for a confirm: ≈ confirm or ≈ revert, its timer made harmless, and a
// later `confirm ID` says what became of it.
namespace {

enum class Pending { live, armed, window };

const char* to_string(Pending p) {
    return p == Pending::live    ? "a live trial"
           : p == Pending::armed ? "an armed reboot trial"
                                 : "a trial boot's window";
}

// A trial of generation 3 that waits for its confirm; returns its ID.
std::string start_pending(CheckRig& c, Pending p) {
    if (p == Pending::window) return boot_awaiting_trial(c);
    c.check_script("required/ok", "echo ok");
    auto r = p == Pending::live ? c.nixboot({"try", "--live", "3", "--confirm-timeout", "60"})
                                : c.nixboot({"try", "3", "--reboot", "--confirm-timeout", "120"});
    INFO(r.out << r.err);
    REQUIRE(r.status == 0);
    return parse_live_trial(read_file(c.rig.state / "live"), "live").id;
}

std::string trial_words(Pending p, const std::string& id) {
    return (p == Pending::live ? "the live trial " : "trial ") + id + " of generation 3";
}

// `confirm ID` afterwards: exit 1, nothing changed, what became of it.
void check_confirm_says(CheckRig& c, Pending p, const std::string& id, const std::string& how) {
    const auto before = c.rig.snapshot();
    auto r = c.nixboot({"confirm", id, "--run", c.run.string()});
    CHECK(r.status == 1);
    CHECK(r.err.starts_with("nixboot: confirm: no trial waits for a confirmation: " +
                            std::string(p == Pending::live ? "live trial " : "trial ") + id + " of generation 3 " +
                            how + " at "));
    CHECK(c.rig.snapshot() == before);
}

// The revert timer firing after the settle finds nothing to do.
void check_timer_harmless(CheckRig& c, Pending p, const std::string& default_entry) {
    if (p == Pending::armed) return;  // no timer before the trial boot
    auto late = run_program(timer_command(read_file(c.calls)), {"NIXBOOT_SYSTEMCTL=" + c.systemctl.string(),
                                                                "NIXBOOT_REBOOT_COMMAND=" + c.reboot.string()});
    CHECK(late.status == 0);
    CHECK(late.out == "no trial to revert (already confirmed or reverted)\n");
    CHECK(c.rig.pinned_good_default() == default_entry);
}

}  // namespace

TEST_CASE("settled by hand: mark-good of the trial's generation confirms it", "[health][live][confirm][cli]") {
    for (Pending p : {Pending::live, Pending::armed, Pending::window}) {
        DYNAMIC_SECTION(to_string(p)) {
            CheckRig c;
            const std::string id = start_pending(c, p);
            auto r = c.nixboot({"mark-good", "3", "--run", c.run.string()});
            INFO(r.out << r.err);
            CHECK(r.status == 0);
            CHECK(r.out == "nixos-generation-3 is good and the default\n" + trial_words(p, id) +
                               " is settled: confirmed by this mark-good\n");
            const std::string reason = "settled by 'nixboot mark-good': marked good by hand";
            CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
            CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-3-link");
            CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
            CHECK(c.events_for(3).back() == "live-confirm");
            CHECK(c.reason_of(3, JournalEvent::live_confirm) == reason);
            CHECK(c.reason_of(3, JournalEvent::good) == reason);
            CHECK(c.reason_of(3, JournalEvent::bad) == "<none>");
            CHECK(lines_of(read_file(c.calls)).back() == std::string("systemctl stop nixboot-") +
                                                             (p == Pending::live ? "live" : "confirm") +
                                                             "-revert-3.timer");
            if (p == Pending::window) {
                // The trial boot's verdict: a re-run of the check keeps it, the feeder stops.
                CHECK(read_file(c.run / "nixboot/verdict") == "good\n" + reason + "\n");
                CHECK(read_file(c.watchdog) == ".V");
            } else {
                CHECK_FALSE(std::filesystem::exists(c.run / "nixboot/verdict"));
            }
            check_timer_harmless(c, p, "nixos-generation-3");
            check_confirm_says(c, p, id, "was confirmed");
            auto again = c.nixboot({"confirm", id, "--run", c.run.string()});
            CHECK(again.err.ends_with("Z: " + reason + "\n"));
        }
    }
}

TEST_CASE("settled by hand: mark-bad of the trial's generation reverts it, no reboot", "[health][live][confirm][cli]") {
    for (Pending p : {Pending::live, Pending::armed, Pending::window}) {
        DYNAMIC_SECTION(to_string(p)) {
            CheckRig c;
            const std::string id = start_pending(c, p);
            const auto before_calls = lines_of(read_file(c.calls));
            const auto reboots = std::count(before_calls.begin(), before_calls.end(), std::string("reboot "));
            auto r = c.nixboot({"mark-bad", "3", "--reason", "smoke test failed", "--run", c.run.string()});
            INFO(r.out << r.err);
            CHECK(r.status == 0);
            const std::string how = p == Pending::live ? "reverted by this mark-bad, as its revert timer would have"
                                    : p == Pending::armed
                                        ? "cancelled by this mark-bad before its trial boot"
                                        : "reverted by this mark-bad; if this is its trial boot, reboot to return to "
                                          "the default";
            CHECK(r.out == "nixos-generation-3 is bad\n" + trial_words(p, id) + " is settled: " + how + "\n");
            const std::string reason = "settled by 'nixboot mark-bad': smoke test failed";
            CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
            CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-2-link");
            CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
            CHECK(c.events_for(3).back() == "live-revert");
            CHECK(c.reason_of(3, JournalEvent::live_revert) == reason);
            CHECK(c.reason_of(3, JournalEvent::bad) == reason);
            const auto calls = lines_of(read_file(c.calls));
            CHECK(std::count(calls.begin(), calls.end(), std::string("reboot ")) == reboots);
            if (p == Pending::live) CHECK(std::find(calls.begin(), calls.end(), "switch-2 test") != calls.end());
            if (p == Pending::window)
                CHECK(read_file(c.run / "nixboot/verdict") == "bad\n" + reason + "\n");
            else
                CHECK_FALSE(std::filesystem::exists(c.run / "nixboot/verdict"));
            check_timer_harmless(c, p, "nixos-generation-2");
            check_confirm_says(c, p, id, "was reverted");
            auto again = c.nixboot({"confirm", id, "--run", c.run.string()});
            CHECK(again.err.ends_with("Z: " + reason + "\n"));
            if (p == Pending::armed) CHECK(c.boot() == "nixos-generation-2.conf");  // never booted
        }
    }
}

TEST_CASE("settled by hand: rollback reverts the trial it disarms", "[health][live][confirm][cli]") {
    for (Pending p : {Pending::live, Pending::armed, Pending::window}) {
        DYNAMIC_SECTION(to_string(p)) {
            CheckRig c;
            // Generation 1 good too, so there is something to roll back to.
            REQUIRE(c.nixboot({"mark-good", "1"}).status == 0);
            REQUIRE(c.nixboot({"mark-good", "2"}).status == 0);
            const std::string id = start_pending(c, p);
            auto r = c.nixboot({"rollback", "--run", c.run.string()});
            INFO(r.out << r.err);
            CHECK(r.status == 0);
            CHECK(r.out == "default is now nixos-generation-1\n" + trial_words(p, id) +
                               " is settled: reverted by this rollback\n");
            const std::string reason = "settled by 'nixboot rollback': rolled back by hand";
            CHECK(c.rig.pinned_good_default() == "nixos-generation-1");
            CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-1-link");
            CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
            CHECK(c.reason_of(3, JournalEvent::live_revert) == reason);
            CHECK(c.reason_of(3, JournalEvent::bad) == reason);
            if (p == Pending::live) {
                const auto calls = lines_of(read_file(c.calls));
                CHECK(std::find(calls.begin(), calls.end(), "switch-2 test") != calls.end());
            }
            check_timer_harmless(c, p, "nixos-generation-1");
            check_confirm_says(c, p, id, "was reverted");
            auto again = c.nixboot({"confirm", id, "--run", c.run.string()});
            CHECK(again.err.ends_with("Z: " + reason + "\n"));
        }
    }
}

TEST_CASE("settled by hand: a failed rollback, or a verdict on another generation, leaves the trial alone",
          "[health][live][confirm][cli]") {
    CheckRig c;
    const std::string id = start_pending(c, Pending::live);
    const auto live = read_file(c.rig.state / "live");
    const auto before = c.rig.snapshot();
    auto r = c.nixboot({"rollback"});
    CHECK(r.status == 1);
    CHECK(r.err == "nixboot: no good generation older than 2 to roll back to\n");
    CHECK(c.rig.snapshot() == before);
    r = c.nixboot({"mark-good", "1"});
    CHECK(r.status == 0);
    CHECK(r.out == "nixos-generation-1 is good and the default\n");
    CHECK(read_file(c.rig.state / "live") == live);
}

TEST_CASE("settled by hand: a crash after the settle was recorded is finished with the human's reason",
          "[health][live][confirm][cli][idempotence]") {
    CheckRig c;
    start_pending(c, Pending::live);
    auto live = read_file(c.rig.state / "live");
    live.replace(live.find("status=running"), 14, "status=reverting");
    write_file(c.rig.state / "live", live + "reason=settled by 'nixboot mark-bad': marked bad by hand\n");
    auto r = run_program(timer_command(read_file(c.calls)), {"NIXBOOT_SYSTEMCTL=" + c.systemctl.string()});
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out ==
          "reverted: generation 2 is active again, generation 3 is marked bad (settled by 'nixboot "
          "mark-bad': marked bad by hand)\n");
    CHECK(c.reason_of(3, JournalEvent::live_revert) == "settled by 'nixboot mark-bad': marked bad by hand");
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
}

TEST_CASE("confirm trial: a record left by a crash before the arm is dropped, the generation is not judged",
          "[health][live][confirm][cli]") {
    CheckRig c;
    c.check_script("required/ok", "echo ok");
    // `try 3 --reboot --confirm-timeout 120` killed between writing STATE/live and arming.
    LiveTrial t;
    t.kind = TrialKind::reboot;
    t.status = LiveStatus::armed;
    t.generation = 3;
    t.boot_id = "00000000-0000-0000-0000-000000000000";
    t.started = std::time(nullptr);
    t.unit = "nixboot-confirm-revert-3";
    t.id = "0123456789abcdef0123456789abcdef";
    t.window = 120;
    write_file(c.rig.state / "live", format_live_trial(t));
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    const std::string reason =
        "trial 0123456789abcdef0123456789abcdef of generation 3 was never armed ('nixboot try' was interrupted "
        "between recording it and arming it); generation 3 never booted and is left as it was";
    CHECK(r.out.find("note: " + reason + "\n") != std::string::npos);
    CHECK(r.out.find("marked bad:") == std::string::npos);
    CHECK(r.out.find("rolled back") == std::string::npos);
    CHECK(c.events_for(3) == std::vector<std::string>{"live-revert"});
    CHECK(c.reason_of(3, JournalEvent::live_revert) == reason);
    CHECK_FALSE(std::filesystem::exists(c.rig.state / "live"));
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    // Not judged: it can be tried at once.
    CHECK(c.nixboot({"try", "3"}).status == 0);
}
