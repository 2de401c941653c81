// A temporary systemd-boot machine with everything `nixboot check` and live
// trials touch: generations 1..3 installed (2 the good default, the profile
// on 2), a checks directory, config file, fake /run, /proc/cmdline,
// /proc/uptime, /dev/kmsg, a watchdog file, and recorders for the reboot,
// systemd-run and systemctl commands and each generation's
// switch-to-configuration (all append to `calls`).
#pragma once

#include "boot/journal.hpp"
#include "tests/boot/health/health_support.hpp"

#include "tests/catch.hpp"

namespace nixboot::test {

// A machine with generations 1..3 installed (2 the good default) and the
// files `nixboot check` reads.
struct CheckRig {
    Rig rig{3, "systemd-boot 252.39-1~deb12u1", 2};
    std::filesystem::path run = rig.tmp / "run";
    std::filesystem::path checks = rig.tmp / "checks.d";
    std::filesystem::path config = rig.tmp / "nixboot.conf";
    std::filesystem::path cmdline = rig.tmp / "cmdline";
    std::filesystem::path uptime = rig.tmp / "uptime";
    std::filesystem::path kmsg = rig.tmp / "kmsg";
    std::filesystem::path watchdog = rig.tmp / "watchdog";
    std::filesystem::path calls = rig.tmp / "calls";
    std::filesystem::path reboot = rig.tmp / "bin/reboot";
    std::filesystem::path systemd_run = rig.tmp / "bin/systemd-run";
    std::filesystem::path systemctl = rig.tmp / "bin/systemctl";

    explicit CheckRig(const std::string& extra_config = "") {
        ::chmod(rig.tmp.path().c_str(), 0755);
        std::filesystem::create_directories(run);
        std::filesystem::create_directories(checks / "required");
        std::filesystem::create_directories(checks / "wanted");
        write_file(config, "checks-dir = " + checks.string() + "\nwatchdog-device = " + watchdog.string() +
                               "\nverdict-timeout = 600\n" + extra_config);
        write_file(uptime, "30.00 40.00\n");
        write_file(kmsg, "");
        write_file(watchdog, "");
        write_recorder(reboot, calls, "reboot");
        write_recorder(systemd_run, calls, "systemd-run");
        write_recorder(systemctl, calls, "systemctl");
        for (unsigned n = 1; n <= 3; ++n)
            write_recorder(rig.store / ("system-" + std::to_string(n)) / "bin/switch-to-configuration", calls,
                           "switch-" + std::to_string(n));
        auto r = nixboot({"install"});
        REQUIRE(r.status == 0);
    }
    void check_script(const std::string& rel, const std::string& body) {
        write_script(checks / rel, "#!/bin/sh\n" + body + "\n");
    }
    // The command line of `nixboot ARGS` on this machine, and its environment.
    std::vector<std::string> argv(const std::vector<std::string>& args) const {
        std::vector<std::string> out{NIXBOOT_BIN,          "--esp",     rig.esp.string(),     "--profile",
                                     rig.profile.string(), "--efivars", rig.efivars.string(), "--state",
                                     rig.state.string(),   "--config",  config.string()};
        out.insert(out.end(), args.begin(), args.end());
        return out;
    }
    std::vector<std::string> env() const {
        return {"NIXBOOT_REBOOT_COMMAND=" + reboot.string(), "NIXBOOT_SYSTEMD_RUN=" + systemd_run.string(),
                "NIXBOOT_SYSTEMCTL=" + systemctl.string(),
                "NIXBOOT_CURRENT_SYSTEM=" + (rig.store / "system-2").string()};
    }
    RunResult nixboot(std::vector<std::string> args) { return run_program(argv(args), env()); }
    std::vector<std::string> check_args() const {
        return {"check", "--run", run.string(), "--cmdline", cmdline.string(), "--uptime", uptime.string()};
    }
    RunResult check() { return nixboot(check_args()); }
    // Power-on: the loader picks and renames, stage 1 records the boot.
    std::string boot(Rig::Torn torn = Rig::Torn::no) {
        std::string booted = rig.boot(torn);
        std::string id = booted.substr(0, booted.find_first_of("+."));
        write_file(cmdline, "init=/x nixboot.entry=" + id + "\n");
        std::filesystem::remove_all(run);  // /run is a fresh tmpfs each boot
        std::filesystem::create_directories(run);
        auto r = run_program({NIXBOOT_STAGE1_BIN, "--cmdline", cmdline.string(), "--efivars", rig.efivars.string(),
                              "--run", run.string(), "--kmsg", kmsg.string(), "--watchdog-device", watchdog.string(),
                              "--config", config.string()},
                             stage1_env(rig.tmp.path()));
        REQUIRE(r.status == 0);
        return booted;
    }
    std::vector<std::string> events_for(unsigned generation) {
        std::vector<std::string> out;
        for (const auto& rec : read_journal(rig.state).records)
            if (rec.generation == generation) out.emplace_back(to_string(rec.event));
        return out;
    }
    std::string reason_of(unsigned generation, JournalEvent event) {
        for (const auto& rec : read_journal(rig.state).records)
            if (rec.generation == generation && rec.event == event) return rec.reason;
        return "<none>";
    }
};

}  // namespace nixboot::test
