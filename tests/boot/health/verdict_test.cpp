// The verdict: pure decision, and `nixboot check` end to end on a temporary
// systemd-boot machine (tests/cli/rig.hpp models the loader's boot), with
// nixboot-stage1 recording the boot first, real check executables, and a
// reboot command that only records its call.
#include "boot/health/verdict.hpp"

#include "boot/journal.hpp"
#include "boot/util/error.hpp"
#include "tests/boot/health/check_rig.hpp"

#include "tests/catch.hpp"

#include <nlohmann/json.hpp>

using namespace nixboot;
using namespace nixboot::health;
using namespace nixboot::test;

TEST_CASE("verdict: required checks decide, wanted ones only report", "[health][verdict]") {
    CheckResult pass{"a", CheckKind::required, CheckOutcome::passed, 0, {}, {}, ""};
    CheckResult wanted_fail{"ntp", CheckKind::wanted, CheckOutcome::failed, 1, {}, {}, "exit status 1"};
    CheckResult req_fail{"ssh", CheckKind::required, CheckOutcome::failed, 1, {}, {}, "exit status 1"};
    CheckResult req_timeout{
        "db", CheckKind::required, CheckOutcome::timed_out, {}, {}, {}, "killed after the 30 s timeout"};
    CHECK(decide({pass}, {}) == Decision{Verdict::good, "the required check passed"});
    CHECK(decide({}, {}) == Decision{Verdict::good, "all 0 required checks passed"});
    CHECK(decide({pass, pass, wanted_fail}, {}) ==
          Decision{Verdict::good, "all 2 required checks passed (wanted check failed: ntp)"});
    CHECK(decide({pass, req_fail}, {}) == Decision{Verdict::bad, "required check 'ssh' failed (exit status 1)"});
    CHECK(decide({req_timeout}, {}) ==
          Decision{Verdict::bad, "required check 'db' timed out (killed after the 30 s timeout)"});
    CheckRefusal refused{"x", CheckKind::required, "/c/required/x", "writable by group or others (mode 0777)"};
    CHECK(decide({pass}, {refused}) ==
          Decision{Verdict::bad, "required check 'x' refused: writable by group or others (mode 0777)"});
    refused.kind = CheckKind::wanted;
    CHECK(decide({pass}, {refused}).verdict == Verdict::good);
}

TEST_CASE("verdict: the verdict file pair", "[health][verdict]") {
    Decision d{Verdict::bad, "required check 'ssh' failed\n(exit status 1)"};
    CHECK(format_verdict(d) == "bad\nrequired check 'ssh' failed (exit status 1)\n");
    CHECK(parse_verdict(format_verdict(d), "v") ==
          Decision{Verdict::bad, "required check 'ssh' failed (exit status 1)"});
    CHECK_THROWS_WITH(parse_verdict("maybe\n", "/run/nixboot/verdict"),
                      "/run/nixboot/verdict:1: expected 'good' or 'bad'");
    CHECK(unverdicted_trial_reason(3, 2u) ==
          "trial boot of generation 3 did not reach a verdict; booted generation 2 instead");
}

TEST_CASE("check: a trial whose required checks pass is promoted and the watchdog disarmed", "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ok", "echo fine");
    c.check_script("wanted/flaky", "echo nope; exit 1");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    CHECK(c.boot() == "nixos-generation-3+0-1.conf");
    CHECK(read_file(c.run / "nixboot/boot").find("trial=1\n") != std::string::npos);
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("ok: fine\n") != std::string::npos);
    CHECK(r.out.find("flaky: nope\n") != std::string::npos);
    CHECK(r.out.find("verdict on nixos-generation-3: good: the required check passed (wanted check failed: flaky)\n") !=
          std::string::npos);
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-3-link");
    CHECK(std::filesystem::exists(c.rig.esp / "loader/entries/nixos-generation-3.conf"));
    CHECK(read_file(c.run / "nixboot/verdict").starts_with("good\n"));
    CHECK(read_file(c.watchdog) == ".V");  // stage 1's feed, then the magic close
    CHECK(read_or_empty(c.calls).empty());
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "good", "promote"});
}

namespace {

// How many times `text` occurs in `in`.
std::size_t occurrences(const std::string& in, const std::string& text) {
    std::size_t n = 0;
    for (auto pos = in.find(text); pos != std::string::npos; pos = in.find(text, pos + text.size())) ++n;
    return n;
}

std::string torn_line(const CheckRig& c, const std::string& entry, const std::string& stale) {
    return "nixboot: warning: entry 'nixos-generation-3' has 2 file names in " +
           (c.rig.esp / "loader/entries").string() + ", as a rename cut short leaves them: " + entry +
           " (read as the entry), " + stale +
           " (stale); on FAT they can share one cluster chain, so nixboot removes and rewrites neither: unmount the "
           "ESP, run 'fsck.fat -a' on its device (it empties one of the names, which splits them), mount it, remove " +
           stale + " and run 'nixboot install'\n";
}

}  // namespace

TEST_CASE(
    "check: a torn counter rename (both names left) is decided on the name LoaderBootCountPath gives, the old "
    "name stays, status and install warn once",
    "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ok", "echo fine");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    CHECK(c.boot(Rig::Torn::yes) == "nixos-generation-3+0-1.conf");
    const auto entries = c.rig.esp / "loader/entries";
    CHECK(std::filesystem::hard_link_count(entries / "nixos-generation-3+1-0.conf") == 2);
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("verdict on nixos-generation-3: good: the required check passed\n") != std::string::npos);
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-3-link");
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "good", "promote"});
    // only the loader's new name was renamed (blessed); neither name was unlinked
    CHECK(c.rig.entries() == std::vector<std::string>{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf",
                                                      "nixos-generation-3+1-0.conf", "nixos-generation-3.conf"});
    CHECK(std::filesystem::hard_link_count(entries / "nixos-generation-3.conf") == 2);

    const auto line = torn_line(c, "nixos-generation-3.conf", "nixos-generation-3+1-0.conf");
    auto status = c.nixboot({"status"});
    CHECK(status.status == 0);
    CHECK(occurrences(status.err, line) == 1);
    auto install = c.nixboot({"install"});
    CHECK(install.status == 0);
    CHECK(occurrences(install.err, line) == 1);
    CHECK(std::filesystem::hard_link_count(entries / "nixos-generation-3.conf") == 2);
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
}

TEST_CASE("check: a torn counter rename whose checks fail is marked bad on the new name and reboots into the default",
          "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ssh", "echo 'port 22 closed'; exit 1");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot(Rig::Torn::yes);
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 1);
    CHECK(r.out.find("nixos-generation-3 is marked bad; rebooting into the default: " + c.reboot.string() + "\n") !=
          std::string::npos);
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(read_file(c.calls) == "reboot \n");
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "bad"});
    CHECK(c.reason_of(3, JournalEvent::bad) ==
          "trial boot of nixos-generation-3: required check 'ssh' failed (exit status 1)");
    CHECK(c.rig.entries() == std::vector<std::string>{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf",
                                                      "nixos-generation-3+0-1.conf", "nixos-generation-3+1-0.conf"});
    CHECK(std::filesystem::hard_link_count(c.rig.esp / "loader/entries/nixos-generation-3+0-1.conf") == 2);
    // the next boot: the loader boots the pinned default, never the stale name
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto status = c.nixboot({"status"});
    CHECK(status.status == 0);
    CHECK(occurrences(status.err, torn_line(c, "nixos-generation-3+0-1.conf", "nixos-generation-3+1-0.conf")) == 1);
}

TEST_CASE("check: a failing required check marks the trial bad and reboots into the default",
          "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ssh", "echo 'port 22 closed'; exit 1");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 1);
    CHECK(r.out.find("nixos-generation-3 is marked bad; rebooting into the default: " + c.reboot.string() + "\n") !=
          std::string::npos);
    CHECK(read_file(c.calls) == "reboot \n");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-2-link");
    CHECK(std::filesystem::exists(c.rig.esp / "loader/entries/nixos-generation-3+0-1.conf"));
    CHECK(c.reason_of(3, JournalEvent::bad) ==
          "trial boot of nixos-generation-3: required check 'ssh' failed (exit status 1)");
    CHECK(read_file(c.watchdog) == ".");  // still armed: the reboot is on its way
    // The next power-on boots the default.
    CHECK(c.boot() == "nixos-generation-2.conf");
}

TEST_CASE("check: on-failure=stay marks bad without rebooting", "[health][verdict][cli]") {
    CheckRig c("on-failure = stay\n");
    c.check_script("required/ssh", "exit 1");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    auto r = c.check();
    CHECK(r.status == 1);
    CHECK(r.out.find("staying (on-failure=stay)") != std::string::npos);
    CHECK(read_or_empty(c.calls).empty());
    CHECK(read_file(c.watchdog) == ".V");
}

TEST_CASE("check: a required check that times out fails the trial", "[health][verdict][cli]") {
    CheckRig c("[check.slow]\ntimeout = 1\n");
    c.check_script("required/slow", "sleep 30");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    auto t0 = std::chrono::steady_clock::now();
    auto r = c.check();
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
    CHECK(r.status == 1);
    CHECK(c.reason_of(3, JournalEvent::bad) ==
          "trial boot of nixos-generation-3: required check 'slow' timed out (killed after the 1 s timeout)");
}

TEST_CASE("check: a world-writable required check is refused and fails the trial",
          "[health][verdict][cli][bad-input]") {
    CheckRig c;
    write_script(c.checks / "required/open", "#!/bin/sh\ntouch " + (c.rig.tmp / "ran").string() + "\n", 0777);
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    auto r = c.check();
    CHECK(r.status == 1);
    CHECK(r.out.find("open (required): refused '" + (c.checks / "required/open").string() +
                     "': writable by group or others (mode 0777)\n") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(c.rig.tmp / "ran"));
    CHECK(c.events_for(3).back() == "bad");
}

TEST_CASE("check: past the verdict timeout the trial is bad without running checks", "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ok", "touch " + (c.rig.tmp / "ran").string());
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    write_file(c.uptime, "601.00 1.00\n");
    CHECK(c.check().status == 1);
    CHECK_FALSE(std::filesystem::exists(c.rig.tmp / "ran"));
    CHECK(c.reason_of(3, JournalEvent::bad) ==
          "trial boot of nixos-generation-3: no verdict within the verdict timeout of 600 s after boot");
}

TEST_CASE("check: a non-trial boot only reports", "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ssh", "exit 1");
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto before = c.rig.snapshot();
    auto r = c.check();
    CHECK(r.status == 1);
    CHECK(r.out.find("nixos-generation-2 is not a trial: a required check did not pass (reported only)\n") !=
          std::string::npos);
    CHECK(c.rig.snapshot() == before);
    CHECK(read_or_empty(c.calls).empty());
    CHECK_FALSE(std::filesystem::exists(c.run / "nixboot/verdict"));
}

TEST_CASE("check: a trial that never reached a verdict is settled as bad on the next boot", "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    CHECK(c.boot() == "nixos-generation-3+0-1.conf");
    // ... it hangs; the watchdog resets; the one-shot is spent: the default boots.
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("marked bad: nixos-generation-3: trial boot of generation 3 did not reach a verdict; booted "
                     "generation 2 instead\n") != std::string::npos);
    CHECK(c.reason_of(3, JournalEvent::bad) ==
          "trial boot of generation 3 did not reach a verdict; booted generation 2 instead");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
    // Idempotent: a second run settles nothing more.
    auto again = c.check();
    CHECK(again.out.find("marked bad") == std::string::npos);
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "bad"});
}

TEST_CASE("check: without the stage-1 record the boot is recomputed from the loader's variables",
          "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    std::filesystem::remove(c.run / "nixboot/boot");
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
}

TEST_CASE("check: a missing checks directory changes nothing", "[health][verdict][cli][bad-input]") {
    CheckRig c;
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    std::filesystem::remove_all(c.checks);
    auto before = c.rig.snapshot();
    auto r = c.check();
    CHECK(r.status == 1);
    CHECK(r.err.find("checks directory '" + c.checks.string() + "': No such file or directory") != std::string::npos);
    CHECK(c.rig.snapshot() == before);
    CHECK_FALSE(std::filesystem::exists(c.run / "nixboot/verdict"));
}

TEST_CASE("check: promotion interrupted at every step and re-run ends good exactly once",
          "[health][verdict][cli][idempotence]") {
    // The steps after the decision: verdict file, bless (rename), default,
    // profile. Each prefix of them is set up by hand as a crash would leave
    // it, then `nixboot check` runs again. A now-failing check proves the
    // re-run finishes the recorded verdict instead of deciding again.
    for (int done = 0; done <= 4; ++done) {
        DYNAMIC_SECTION("interrupted after step " << done) {
            CheckRig c;
            c.check_script("required/ok", "exit 1");
            REQUIRE(c.nixboot({"try", "3"}).status == 0);
            c.boot();
            if (done >= 1) write_file(c.run / "nixboot/verdict", "good\nthe required check passed\n");
            if (done >= 2)
                std::filesystem::rename(c.rig.esp / "loader/entries/nixos-generation-3+0-1.conf",
                                        c.rig.esp / "loader/entries/nixos-generation-3.conf");
            if (done >= 3) {
                auto conf = c.rig.conf();
                auto p = conf.find("default ");
                conf.replace(p, conf.find('\n', p) - p, "default nixos-generation-3.conf");
                write_file(c.rig.esp / "loader/loader.conf", conf);
            }
            if (done >= 4) c.rig.point_profile(3);
            if (done == 0) {
                // No verdict yet: the re-run decides, with a passing check.
                c.check_script("required/ok", "exit 0");
            }
            auto r = c.check();
            INFO(r.out << r.err);
            CHECK(r.status == 0);
            CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
            CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-3-link");
            auto ev = c.events_for(3);
            CHECK(std::count(ev.begin(), ev.end(), "bad") == 0);
            // Run once more: nothing changes.
            auto before = c.rig.snapshot();
            CHECK(c.check().status == 0);
            CHECK(c.rig.snapshot() == before);
        }
    }
}

TEST_CASE("check: a power cut after the good verdict was journaled: the next boot finishes the promotion",
          "[health][verdict][cli][idempotence]") {
    // mark_good journals `good` before it touches the loader. The cut comes
    // right after: the trial entry is still "+0-1" (spent), the default is 2,
    // and /run (the verdict file) is gone. The next boot (the default, 2)
    // must promote 3 without a second verdict.
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    CHECK(c.boot() == "nixos-generation-3+0-1.conf");
    JournalRecord good;
    good.time = journal_now();
    good.event = JournalEvent::good;
    good.generation = 3;
    good.entry = "nixos-generation-3";
    good.bootloader = "systemd-boot";
    good.reason = "trial boot of nixos-generation-3: every required check passed";
    append_journal(c.rig.state, good);
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("promoted nixos-generation-3: finished the promotion a power cut interrupted") !=
          std::string::npos);
    CHECK(r.out.find("marked bad") == std::string::npos);
    CHECK(c.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(std::filesystem::read_symlink(c.rig.profile) == "system-3-link");
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "good", "promote"});
    // Nothing more on the next run.
    auto before = c.rig.snapshot();
    CHECK(c.check().status == 0);
    CHECK(c.rig.snapshot() == before);
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "good", "promote"});
}

TEST_CASE("check: a bad verdict interrupted before marking is finished by the re-run",
          "[health][verdict][cli][idempotence]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");  // would pass now: the recorded verdict wins
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    write_file(c.run / "nixboot/verdict", "bad\nrequired check 'ok' failed (exit status 1)\n");
    auto r = c.check();
    CHECK(r.status == 1);
    CHECK(r.out.find("(decided earlier in this boot)") != std::string::npos);
    CHECK(c.events_for(3) == std::vector<std::string>{"arm", "bad"});
    CHECK(read_file(c.calls) == "reboot \n");
    CHECK(c.rig.pinned_good_default() == "nixos-generation-2");
}

TEST_CASE("check: a GRUB trial is detected by stage 1 and promoted by the check", "[health][verdict][cli][grub]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    TempDir tmp;
    ::chmod(tmp.path().c_str(), 0755);
    auto boot = tmp / "boot", profile = tmp / "profiles/system", checks = tmp / "checks.d", run = tmp / "run";
    std::filesystem::create_directories(boot);
    std::filesystem::create_directories(checks / "required");
    std::filesystem::create_directories(run);
    for (unsigned n = 1; n <= 3; ++n) make_generation(tmp / "store", profile, n);
    std::filesystem::create_symlink("system-2-link", profile);
    auto cmdline = tmp / "cmdline";
    write_file(cmdline, "ro quiet\n");
    write_file(tmp / "nixboot.conf",
               "grub-device-path = /\ngrub-probe-boot = fs=ext2\ngrub-cmdline = " + cmdline.string() +
                   "\nchecks-dir = " + checks.string() + "\nwatchdog-device = " + (tmp / "watchdog").string() + "\n");
    write_file(tmp / "watchdog", "");
    write_script(checks / "required/ok", "#!/bin/sh\necho up\n");
    auto nixboot = [&](std::vector<std::string> args) {
        std::vector<std::string> argv{NIXBOOT_BIN,
                                      "--bootloader",
                                      "grub",
                                      "--config",
                                      (tmp / "nixboot.conf").string(),
                                      "--esp",
                                      boot.string(),
                                      "--profile",
                                      profile.string(),
                                      "--state",
                                      (tmp / "state").string(),
                                      "--efivars",
                                      (tmp / "efivars").string()};
        argv.insert(argv.end(), args.begin(), args.end());
        return run_program(argv);
    };
    auto env = [&] {
        return run_program({nixboot::test::find_program("grub-editenv"), (boot / "grub/grubenv").string(), "list"}).out;
    };
    REQUIRE(nixboot({"install"}).status == 0);
    REQUIRE(nixboot({"try", "3"}).status == 0);
    CHECK(env().find("nixboot_trial=nixos-generation-3\nnixboot_tries=1\n") != std::string::npos);
    // What GRUB's preamble does at power-on: save the decrement, boot the
    // trial with the trial words on its command line.
    REQUIRE(run_program({nixboot::test::find_program("grub-editenv"), (boot / "grub/grubenv").string(), "set",
                         "nixboot_tries=0"})
                .status == 0);
    write_file(cmdline, "init=/x nixboot.entry=nixos-generation-3 nixboot.trial=nixos-generation-3 nixboot.tries=0\n");
    auto s1 = run_program({NIXBOOT_STAGE1_BIN, "--cmdline", cmdline.string(), "--efivars", (tmp / "efivars").string(),
                           "--run", run.string(), "--kmsg", (tmp / "kmsg").string(), "--watchdog-device",
                           (tmp / "watchdog").string(), "--config", (tmp / "none.conf").string()},
                          nixboot::test::stage1_env(tmp.path()));
    REQUIRE(s1.status == 0);
    CHECK(read_file(run / "nixboot/boot") ==
          "bootloader=grub\nentry=nixos-generation-3\nfile=\ntrial=1\ntries-left=0\n"
          "consumed-by=bootloader\nwatchdog=armed\n");
    auto r =
        nixboot({"check", "--run", run.string(), "--cmdline", cmdline.string(), "--uptime", (tmp / "none").string()});
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("verdict on nixos-generation-3: good: the required check passed\n") != std::string::npos);
    CHECK(env().find("nixboot_default=nixos-generation-3") != std::string::npos);
    CHECK(env().find("nixboot_trial=nixos-generation-3") == std::string::npos);
    CHECK(std::filesystem::read_symlink(profile) == "system-3-link");
    CHECK(read_file(tmp / "watchdog") == ".V");
}

namespace {

// A GRUB machine with generations 1..3 (1 the default), a trial of 3 armed by
// `nixboot try 3 --tries TRIES`; boot() plays GRUB's preamble and stage 1.
struct GrubCheck {
    TempDir tmp;
    std::filesystem::path boot = tmp / "boot", profile = tmp / "profiles/system", checks = tmp / "checks.d",
                          run = tmp / "run", cmdline = tmp / "cmdline";
    explicit GrubCheck(unsigned tries) {
        ::chmod(tmp.path().c_str(), 0755);
        std::filesystem::create_directories(boot);
        std::filesystem::create_directories(checks / "required");
        for (unsigned n = 1; n <= 3; ++n) make_generation(tmp / "store", profile, n);
        std::filesystem::create_symlink("system-1-link", profile);
        write_file(cmdline, "init=/x nixboot.entry=nixos-generation-1\n");
        write_file(tmp / "nixboot.conf", "grub-device-path = /\ngrub-probe-boot = fs=ext2\ngrub-cmdline = " +
                                             cmdline.string() + "\nchecks-dir = " + checks.string() +
                                             "\nwatchdog-device = " + (tmp / "watchdog").string() + "\n");
        write_file(tmp / "watchdog", "");
        write_script(tmp / "reboot", "#!/bin/sh\necho reboot >> '" + (tmp / "reboots").string() + "'\n");
        REQUIRE(nixboot({"install"}).status == 0);
        REQUIRE(nixboot({"try", "3", "--tries", std::to_string(tries)}).status == 0);
    }
    RunResult nixboot(std::vector<std::string> args) {
        std::vector<std::string> argv{NIXBOOT_BIN,
                                      "--bootloader",
                                      "grub",
                                      "--config",
                                      (tmp / "nixboot.conf").string(),
                                      "--esp",
                                      boot.string(),
                                      "--profile",
                                      profile.string(),
                                      "--state",
                                      (tmp / "state").string(),
                                      "--efivars",
                                      (tmp / "efivars").string()};
        argv.insert(argv.end(), args.begin(), args.end());
        return run_program(argv,
                           {"NIXBOOT_REBOOT_COMMAND=" + (tmp / "reboot").string(), "NIXBOOT_SYSTEMCTL=/bin/true"});
    }
    std::string env() {
        return run_program({nixboot::test::find_program("grub-editenv"), (boot / "grub/grubenv").string(), "list"}).out;
    }
    // What GRUB does at power-on: the trial with its decrement saved, or,
    // with the tries spent, the default with the trial words of a spent trial.
    void boot_entry(unsigned generation, unsigned tries_left, bool decrement) {
        if (decrement)
            REQUIRE(run_program({nixboot::test::find_program("grub-editenv"), (boot / "grub/grubenv").string(), "set",
                                 "nixboot_tries=" + std::to_string(tries_left)})
                        .status == 0);
        write_file(cmdline, "init=/x nixboot.entry=nixos-generation-" + std::to_string(generation) +
                                " nixboot.trial=nixos-generation-3 nixboot.tries=" + std::to_string(tries_left) + "\n");
        std::filesystem::remove_all(run);
        std::filesystem::create_directories(run);
        auto s1 =
            run_program({NIXBOOT_STAGE1_BIN, "--cmdline", cmdline.string(), "--efivars", (tmp / "efivars").string(),
                         "--run", run.string(), "--kmsg", (tmp / "kmsg").string(), "--watchdog-device",
                         (tmp / "watchdog").string(), "--config", (tmp / "none.conf").string()},
                        nixboot::test::stage1_env(tmp.path()));
        REQUIRE(s1.status == 0);
    }
    RunResult check() {
        return nixboot(
            {"check", "--run", run.string(), "--cmdline", cmdline.string(), "--uptime", (tmp / "none").string()});
    }
    std::string state_of_3() {
        auto r = nixboot({"list"});
        auto at = r.out.find("nixos-generation-3");
        if (at == std::string::npos) return r.out;
        auto start = r.out.rfind('\n', at) + 1;                    // npos + 1 == 0: the first line
        return r.out.substr(start, r.out.find('\n', at) - start);  // "3      bad      ..."
    }
};

}  // namespace

TEST_CASE("check: GRUB booted the default after the trial's tries ran out: the trial is settled bad and disarmed",
          "[health][verdict][cli][grub]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    GrubCheck g(1);
    write_script(g.checks / "required/ok", "#!/bin/sh\nexit 0\n");
    g.boot_entry(3, 0, true);  // the trial panics before its check
    g.boot_entry(1, 0, false);
    auto r = g.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("marked bad: nixos-generation-3: trial boot of generation 3 did not reach a verdict; booted "
                     "generation 1 instead\n") != std::string::npos);
    CHECK(g.env().find("nixboot_trial") == std::string::npos);
    CHECK(g.state_of_3().find("bad") != std::string::npos);
    auto journal = read_journal(g.tmp / "state");
    REQUIRE_FALSE(journal.records.empty());
    CHECK(journal.records.back().event == JournalEvent::bad);
    CHECK(journal.records.back().reason ==
          "trial boot of generation 3 did not reach a verdict; booted generation 1 instead");
    // Idempotent: the next boot settles nothing more.
    auto again = g.check();
    CHECK(again.out.find("marked bad") == std::string::npos);
    CHECK(read_journal(g.tmp / "state").records.size() == journal.records.size());
}

TEST_CASE("check: a GRUB trial whose check fails stays bad after the reboot", "[health][verdict][cli][grub]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    GrubCheck g(2);
    write_script(g.checks / "required/fails", "#!/bin/sh\nexit 1\n");
    g.boot_entry(3, 1, true);
    auto r = g.check();
    INFO(r.out << r.err);
    CHECK(r.status == 1);
    CHECK(r.out.find("nixos-generation-3 is marked bad") != std::string::npos);
    CHECK(read_file(g.tmp / "reboots") == "reboot\n");
    CHECK(g.env().find("nixboot_trial") == std::string::npos);
    CHECK(g.state_of_3().find("bad") != std::string::npos);
    CHECK(g.state_of_3().find("trial") == std::string::npos);
}

TEST_CASE("check: a GRUB one-shot trial whose check fails is bad, not a trial with its try back",
          "[health][verdict][cli][grub]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    GrubCheck g(1);
    write_script(g.checks / "required/fails", "#!/bin/sh\nexit 1\n");
    g.boot_entry(3, 0, true);
    auto r = g.check();
    INFO(r.out << r.err);
    CHECK(r.status == 1);
    g.boot_entry(1, 0, false);
    CHECK(g.state_of_3().find("bad") != std::string::npos);
    CHECK(g.state_of_3().find("trial") == std::string::npos);
    auto events = read_journal(g.tmp / "state").records;
    CHECK(std::count_if(events.begin(), events.end(), [](const JournalRecord& rec) {
              return rec.generation == 3u && rec.event == JournalEvent::bad;
          }) == 1);
}

TEST_CASE("check: the first boot after a rollback says so and starts nixboot-rolled-back.target once",
          "[health][verdict][cli]") {
    CheckRig c;
    c.check_script("required/ssh", "echo 'port 22 closed'; exit 1");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    REQUIRE(c.check().status == 1);  // marked bad, the reboot requested
    CHECK(read_file(c.calls) == "reboot \n");
    const std::string reason = "trial boot of nixos-generation-3: required check 'ssh' failed (exit status 1)";
    auto status = c.nixboot({"status"});
    CHECK(status.out.starts_with("rolled back: generation 3 was rolled back at "));
    CHECK(status.out.find(": " + reason + "\nbootloader:") != std::string::npos);
    auto json = nlohmann::json::parse(c.nixboot({"--json", "status"}).out);
    CHECK(json["rolled_back"]["generation"] == 3);
    CHECK(json["rolled_back"]["event"] == "bad");
    CHECK(json["rolled_back"]["reason"] == reason);
    // the fallback boots; its check announces the rollback, once
    c.check_script("required/ssh", "exit 0");
    CHECK(c.boot() == "nixos-generation-2.conf");
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("\nrolled back: generation 3 was rolled back at ") != std::string::npos);
    CHECK(read_file(c.calls) == "reboot \nsystemctl start --no-block nixboot-rolled-back.target\n");
    CHECK(c.boot() == "nixos-generation-2.conf");
    r = c.check();
    CHECK(r.out.find("rolled back:") == std::string::npos);
    CHECK(read_file(c.calls) == "reboot \nsystemctl start --no-block nixboot-rolled-back.target\n");
    // status keeps saying it until the next trial
    CHECK(c.nixboot({"status"}).out.starts_with("rolled back: "));
    REQUIRE(c.nixboot({"try", "1"}).status == 0);
    CHECK(c.nixboot({"status"}).out.starts_with("bootloader: "));
    CHECK(nlohmann::json::parse(c.nixboot({"--json", "status"}).out)["rolled_back"].is_null());
}

TEST_CASE("check: a failed start of nixboot-rolled-back.target is tried again at the next check",
          "[health][verdict][cli]") {
    CheckRig c;
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    CHECK(c.boot() == "nixos-generation-3+0-1.conf");
    CHECK(c.boot() == "nixos-generation-2.conf");  // it hung; the loader fell back
    write_recorder(c.systemctl, c.calls, "systemctl", 1);
    auto r = c.check();
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.err.find("the next check tries again") != std::string::npos);
    write_recorder(c.systemctl, c.calls, "systemctl", 0);
    r = c.check();
    CHECK(r.out.find("rolled back: generation 3 was rolled back at ") != std::string::npos);
    CHECK(read_file(c.calls) ==
          "systemctl start --no-block nixboot-rolled-back.target\n"
          "systemctl start --no-block nixboot-rolled-back.target\n");
    CHECK(c.check().out.find("rolled back:") == std::string::npos);
}
