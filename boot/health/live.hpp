// Live trials ("magic rollback" without a reboot): `nixboot try --live GEN
// --confirm-timeout S` activates GEN with `switch-to-configuration test`
// while the bootloader default stays on the current good generation; a
// transient systemd timer started BEFORE the activation reverts unless
// `nixboot confirm` arrives in time. State: STATE/live (docs/contracts.md).
#pragma once

#include "boot/config.hpp"
#include "boot/health/checks.hpp"
#include "boot/machine.hpp"

#include <chrono>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace nixboot::health {

// running → confirmed → (removed) or running → reverting → (removed); a
// step interrupted half-way is finished by whoever comes next, never undone.
enum class LiveStatus { running, confirmed, reverting };
const char* to_string(LiveStatus status) noexcept;  // "running" | "confirmed" | "reverting"

struct LiveTrial {
    LiveStatus status = LiveStatus::running;
    unsigned generation = 0;
    unsigned previous = 0;                    // generation running before (0: not a profile generation)
    std::filesystem::path previous_toplevel;  // what the revert activates
    std::string boot_id;                      // boot the trial started in
    std::time_t started = 0;
    std::time_t deadline = 0;
    std::string unit;  // transient revert unit
    // 32 random hex digits, printed by `try --live` and shown by `status`: a
    // `confirm ID` confirms only this trial, never a later one ("" in a
    // STATE/live written before trials had IDs).
    std::string id;
    bool operator==(const LiveTrial&) const = default;
};

// Pure pair for STATE/live.
std::string format_live_trial(const LiveTrial& trial);
LiveTrial parse_live_trial(std::string_view text, std::string_view origin);  // throws ParseError

// STATE/live, or nullopt when no live trial runs.
std::optional<LiveTrial> read_live_trial(const std::filesystem::path& state);

struct LiveOptions {
    std::filesystem::path profile = "/nix/var/nix/profiles/system";
    std::filesystem::path state = "/var/lib/nixboot";
    // The running system (its target is what a revert re-activates).
    std::filesystem::path current_system = "/run/current-system";
    std::filesystem::path checks_dir = "/etc/nixboot/checks.d";
    CheckSettings check_settings;
    std::chrono::seconds confirm_timeout{300};
    // argv that starts the revert timer; "--on-active=S", "--unit=U" and the
    // revert argv are appended. Env NIXBOOT_SYSTEMD_RUN replaces the program.
    std::vector<std::string> systemd_run = {"systemd-run", "--collect", "--timer-property=AccuracySec=1s"};
    // argv that stops the timer after a confirm; "U.timer" appended. Env NIXBOOT_SYSTEMCTL replaces the program.
    std::vector<std::string> systemctl_stop = {"systemctl", "stop"};
    // What the timer runs: `nixboot [global options] live-revert`.
    std::vector<std::string> revert_argv;
    // Boot id source (tests point it at a file).
    std::filesystem::path boot_id_source = "/proc/sys/kernel/random/boot_id";
};

// LiveOptions from the settings (profile, state, checks, confirm-timeout).
// Env NIXBOOT_CURRENT_SYSTEM overrides current_system (tests).
LiveOptions live_options(const Config& config, std::vector<std::string> revert_argv);

struct LiveStartReport {
    LiveTrial trial;
    std::vector<CheckResult> checks;
    std::vector<CheckRefusal> refused;
    bool reverted = false;  // a required check failed: reverted already
    std::string reason;     // why it reverted ("" otherwise)
};

// Refuses (Error, nothing changed) while another live trial runs, for an
// unknown generation or the running one. Records STATE/live, journals
// live-start, starts the revert timer, runs GEN/bin/switch-to-configuration
// test, runs the checks; a failing required check reverts at once.
LiveStartReport start_live_trial(Machine& machine, unsigned generation, const LiveOptions& opts,
                                 const OutputSink& sink);

// Accepts the running live trial: stops the timer, promotes GEN
// (Machine::mark_good), journals live-confirm, removes STATE/live. Throws
// Error "no live trial is running" when there is none (nothing changed), and
// Error when the deadline has passed (the revert owns it then).
// With `id`, it confirms only the trial of that ID: another running trial, or
// none, is refused with the ID and what became of it (nothing changed).
LiveTrial confirm_live_trial(Machine& machine, const LiveOptions& opts, const std::optional<std::string>& id = {});

// The revert (the timer's job, also used after a failed check and by the next
// boot's check): activates the previous generation with `switch-to-configuration
// test` (skipped when `activate` is no, e.g. after a reboot), marks GEN bad
// with `reason`, journals live-revert, removes STATE/live. nullopt when no
// live trial runs (already confirmed or reverted): a no-op.
enum class Activate { no, yes };
std::optional<LiveTrial> revert_live_trial(Machine& machine, const LiveOptions& opts, std::string_view reason,
                                           Activate activate);

}  // namespace nixboot::health
