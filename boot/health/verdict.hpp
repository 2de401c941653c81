// The late check's decision (`nixboot check`, nixboot-check.service): run the
// health checks, decide good or bad on a trial boot, persist that decision in
// RUN/nixboot/verdict before acting on it, then promote or mark bad through
// the state machine, and settle trials that never reached a verdict.
// Every step can be interrupted and re-run: a re-run in the same boot
// finishes the recorded verdict instead of deciding again.
#pragma once

#include "boot/config.hpp"
#include "boot/health/boot_record.hpp"
#include "boot/health/checks.hpp"
#include "boot/health/live.hpp"
#include "boot/journal.hpp"
#include "boot/machine.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace nixboot::health {

enum class Verdict { good, bad };
const char* to_string(Verdict verdict) noexcept;  // "good" | "bad"

struct Decision {
    Verdict verdict = Verdict::bad;
    std::string reason;  // one sentence for the journal
    bool operator==(const Decision&) const = default;
};

// Pure: all required checks passed (wanted ones may fail) and none was
// refused → good; otherwise bad, naming the first required failure.
Decision decide(const std::vector<CheckResult>& results, const std::vector<CheckRefusal>& refused);

// RUN/nixboot/verdict: "good|bad\nREASON\n" (pure pair).
std::string format_verdict(const Decision& decision);
Decision parse_verdict(std::string_view text, std::string_view origin);  // throws ParseError

struct BootCheckOptions {
    std::filesystem::path run = "/run";
    std::filesystem::path cmdline = "/proc/cmdline";
    std::filesystem::path uptime = "/proc/uptime";
    std::filesystem::path efivars = "/sys/firmware/efi/efivars";
    std::filesystem::path checks_dir = "/etc/nixboot/checks.d";
    CheckSettings check_settings;
    std::chrono::seconds verdict_timeout{600};
    // Seconds the checks must keep passing, with no service restarting or
    // failing, before a trial boot is promoted (0: promoted when they pass).
    std::chrono::seconds stability_window{0};
    OnFailure on_failure = OnFailure::reboot;
    std::filesystem::path watchdog_device = "/dev/watchdog";
    LiveOptions live;  // to settle a live trial cut short by a reboot, and reboot trials that wait for a confirm
};

enum class RecordSource { stage1, recomputed };

struct BootCheckReport {
    BootRecord record;
    RecordSource source = RecordSource::stage1;
    std::vector<CheckResult> results;
    std::vector<CheckRefusal> refused;
    std::optional<Decision> decision;  // trial boots only (nullopt while awaiting a confirm)
    // A reboot trial whose checks passed and that now waits for `nixboot
    // confirm` (its window and timer are running; nothing promoted).
    std::optional<LiveTrial> awaiting;
    bool resumed = false;               // the verdict came from an earlier run
    std::vector<std::string> settled;   // trials resolved as bad: "ENTRY: REASON"
    std::vector<std::string> finished;  // promotions an earlier boot's power cut interrupted
    std::vector<std::string> notes;     // problems that did not stop the check
    bool reboot = false;                // the caller must run the reboot command
    bool healthy = true;                // every required check passed (or good)
    // On a boot that is not a trial: the rollback the journal ends on, if no
    // check announced it yet. The caller starts nixboot-rolled-back.target
    // and, once that worked, calls announce_rollback.
    std::optional<JournalRecord> rolled_back;
};

// The whole late check. Throws Error (nothing marked) when the checks
// directory is missing; Machine errors propagate with context.
BootCheckReport run_boot_check(Machine& machine, const BootCheckOptions& opts, const OutputSink& sink);

// Records in STATE/rollback-announced that `record` was announced, so the
// next boot's check does not announce it again.
void announce_rollback(const std::filesystem::path& state, const JournalRecord& record);

// Machine::mark_bad, and the `bad` verdict journaled with `reason` when the
// transition itself journaled none (a spent trial already reads bad on disk).
void mark_bad_with_reason(Machine& machine, const std::string& entry, const std::string& reason);

// Reasons, for the journal and tests.
std::string unverdicted_trial_reason(unsigned trial_generation, std::optional<unsigned> booted_generation);

// Stops the watchdog after a verdict if nobody else holds it (the feeder does
// its own magic close when it sees RUN/nixboot/verdict). Returns a note or nullopt.
std::optional<std::string> disarm_watchdog(const std::filesystem::path& device);

}  // namespace nixboot::health
