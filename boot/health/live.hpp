// Trials that wait for a confirmation from outside (G6), in two kinds:
// - live ("magic rollback" without a reboot): `nixboot try --live GEN
//   --confirm-timeout S` activates GEN with `switch-to-configuration test`
//   while the bootloader default stays on the current good generation; a
//   transient systemd timer started BEFORE the activation reverts unless
//   `nixboot confirm` arrives in time.
// - reboot: `nixboot try GEN --reboot --confirm-timeout S` arms a boot trial;
//   on the trial boot, once its checks pass, `nixboot check` starts the same
//   timer instead of promoting, and only `nixboot confirm` promotes; the
//   timer marks the trial bad and reboots into the (unchanged) default.
// State: STATE/live (docs/contracts.md), one trial of either kind at a time.
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

// (armed →) running → confirmed → (removed) or running → reverting →
// (removed); a step interrupted half-way is finished by whoever comes next,
// never undone. `armed`: a reboot trial whose trial boot has not passed its
// checks yet (no window, no timer).
enum class LiveStatus { armed, running, confirmed, reverting };
const char* to_string(LiveStatus status) noexcept;  // "armed" | "running" | "confirmed" | "reverting"

enum class TrialKind { live, reboot };
const char* to_string(TrialKind kind) noexcept;  // "live" | "reboot"

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
    TrialKind kind = TrialKind::live;
    unsigned window = 0;  // reboot: seconds the trial boot waits for the confirm once its checks pass
    // Why it ends, recorded with status confirmed/reverting when a human's
    // verb settled it (mark-good, mark-bad, rollback): whoever finishes the
    // step after a crash journals this reason, not its own ("": not settled
    // by hand; one line, at most 1000 bytes).
    std::string reason;
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
    // Reboot trials: the confirm or the revert on the trial boot writes
    // RUN/nixboot/verdict (the watchdog feeder stops; a re-run of `nixboot
    // check` finishes that verdict) and stops the watchdog.
    std::filesystem::path run = "/run";
    std::filesystem::path watchdog_device = "/dev/watchdog";
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

struct ConfirmTrialReport {
    LiveTrial trial;
    TryReport armed;
};

// `try GEN --confirm-timeout S` for a boot trial: refuses (Error, nothing
// changed) while a trial of either kind is recorded; records STATE/live
// (kind reboot, status armed) BEFORE arming, so the trial boot can never be
// promoted by its checks alone; arms the trial (never reboots: the caller
// prints the ID first); journals live-start. A failed arm removes STATE/live.
// `try_options.reboot` is ignored; `opts.confirm_timeout` is the window.
ConfirmTrialReport arm_confirm_trial(Machine& machine, unsigned generation, TryOptions try_options,
                                     const LiveOptions& opts);

// On the trial boot of GEN, after its checks passed: if STATE/live holds an
// armed reboot trial of GEN, opens its window (status running, this boot,
// deadline = now + min(window, limit)) and starts the revert timer; returns
// the trial then, nullopt when GEN is not such a trial. Throws Error when the
// timer cannot be started (the caller marks the trial bad).
std::optional<LiveTrial> open_confirm_window(const LiveOptions& opts, unsigned generation, std::chrono::seconds limit);

// Accepts the running live trial: stops the timer, promotes GEN
// (Machine::mark_good), journals live-confirm, removes STATE/live. Throws
// Error "no trial waits for a confirmation" when there is none (nothing changed), and
// Error when the deadline has passed (the revert owns it then).
// With `id`, it confirms only the trial of that ID: another running trial, or
// none, is refused with the ID and what became of it (nothing changed).
// A reboot trial is confirmed only in its trial boot's window: armed (checks
// not passed yet) or from another boot is refused (nothing changed).
LiveTrial confirm_live_trial(Machine& machine, const LiveOptions& opts, const std::optional<std::string>& id = {});

// "trial boot of generation N: no confirmation from outside within S s".
std::string no_confirm_reason(const LiveTrial& trial);

// The revert (the timer's job, also used after a failed check and by the next
// boot's check): activates the previous generation with `switch-to-configuration
// test` (skipped when `activate` is no, e.g. after a reboot, and for a reboot
// trial, whose caller reboots into the default instead), marks GEN bad
// with `reason`, journals live-revert, removes STATE/live. nullopt when no
// live trial runs (already confirmed or reverted): a no-op.
enum class Activate { no, yes };
std::optional<LiveTrial> revert_live_trial(Machine& machine, const LiveOptions& opts, std::string_view reason,
                                           Activate activate);

// A reboot trial recorded `armed` whose arm never happened ('nixboot try'
// interrupted between recording it and arming it: no `arm` of GEN in the
// journal since it was recorded, and the loader does not arm GEN): under
// STATE/live.lock, journals live-revert with the reason, removes STATE/live
// and leaves GEN as it was (it never booted, so it is not judged). Returns
// the reason, or nullopt when STATE/live holds no such trial.
std::optional<std::string> drop_unarmed_trial(Machine& machine, const LiveOptions& opts);

// A human's verdict settles the trial STATE/live holds for the entry it
// names, whatever its kind and status (armed, running, confirmed, reverting),
// under STATE/live.lock so the revert timer cannot act in between; the trial
// is recorded confirmed or reverting with the reason first, then finished
// like a confirm or a revert, so a crash is finished with this reason.
// - mark-good ≈ confirm: stop the timer, Machine::mark_good, journal
//   live-confirm "settled by 'nixboot mark-good': REASON".
// - mark-bad ≈ revert: a live trial's previous generation is re-activated,
//   GEN marked bad, journal live-revert "settled by 'nixboot mark-bad':
//   REASON"; a trial boot waiting in its window gets its verdict (bad) but
//   no reboot: a human is there.
// Without such a trial: just Machine::mark_good / mark_bad. Returns the
// trial it settled.
std::optional<LiveTrial> mark_good_settling(Machine& machine, const LiveOptions& opts, std::string_view entry,
                                            std::string_view reason);
std::optional<LiveTrial> mark_bad_settling(Machine& machine, const LiveOptions& opts, std::string_view entry,
                                           std::string_view reason);

struct RollbackSettling {
    std::string entry;                 // the new default
    std::optional<LiveTrial> settled;  // the trial this rollback settled
    bool settled_good = false;         // its generation is the new default (≈ confirm), else reverted
};

// Machine::rollback, then the trial STATE/live holds (any generation: the
// rollback disarms every trial) is settled as mark-bad settles it ("settled
// by 'nixboot rollback': REASON"), or as mark-good does when the rollback
// made its generation the default. A failed rollback settles nothing.
RollbackSettling rollback_settling(Machine& machine, const LiveOptions& opts, std::string_view reason);

// "the live trial of generation N" | "trial ID of generation N" (for messages).
std::string trial_text(const LiveTrial& trial);

}  // namespace nixboot::health
