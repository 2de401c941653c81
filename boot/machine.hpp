// The trial state machine of design.md, shared by every bootloader.
//
//   (new) --install/try--> trial(tries=N) --checks pass--> good --> default
//                             | tries spent / checks fail / timeout
//                             v
//                            bad (kept, listed, never default; can be retried)
//
// Machine composes Backend primitives into transitions that are idempotent
// and keep G1 (the loader's persistent default is a good entry) at every
// step; every mutating call takes STATE/lock and journals its transitions.
#pragma once

#include "boot/backend.hpp"
#include "boot/journal.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

enum class Reboot { no, yes };

struct MachineOptions {
    std::filesystem::path profile = "/nix/var/nix/profiles/system";
    std::filesystem::path state = "/var/lib/nixboot";
    unsigned tries = 1;  // tries of a trial (config `tries`)
    unsigned keep = 0;   // generations kept, 0 = all (config `keep`)
    // How long a verb waits for STATE/lock held by another command: 0 refuses
    // at once (a user can re-run), the boot check waits (its verdict must not
    // be lost to an install running at the same time).
    std::chrono::milliseconds lock_wait{0};
    // `try --reboot` runs this argv (default {"systemctl", "reboot"}); the
    // environment variable NIXBOOT_REBOOT_COMMAND (one word, a program path)
    // overrides it so tests never reboot the machine.
    std::vector<std::string> reboot_command = {"systemctl", "reboot"};
};

struct InstallReport {
    SyncResult sync;
    std::optional<std::string> adopted;        // entry adopted as good on the first run
    std::optional<std::string> default_entry;  // the persistent default afterwards
    std::vector<std::string> skipped;          // "generation 7: <reason>" (broken generations)
    GcResult gc;
};

struct TryOptions {
    std::optional<unsigned> tries;  // default: MachineOptions::tries
    Reboot reboot = Reboot::no;
    bool accept_risk = false;  // forwarded to Backend::arm
};

struct TryReport {
    std::string entry;  // entry ID armed
    ArmMode mode = ArmMode::one_shot;
    unsigned tries = 1;
    std::string fallback;  // the good entry booted if the trial fails
};

struct Status {
    LoaderView view;
    std::optional<unsigned> profile_generation;  // where the system profile points
};

class Machine {
public:
    Machine(Backend& backend, MachineOptions opts);

    // Syncs entries with the profile's generations (incremental; writes
    // nothing when nothing changed). First run: adopts the booted (else the
    // profile's current) generation as good. Retention `keep` keeps the newest
    // `keep` generations and always the newest good, the default, the armed
    // trial, the booted (running) generation, the profile's current one and
    // the entry named by LoaderBootCountPath; older good generations beyond
    // `keep` are removed (G4 as docs/design.md words it).
    InstallReport install();

    // Arms a trial of generation `generation` (its main entry). Refuses an
    // unknown generation, the running default, and a try that leaves no good
    // fallback. With Reboot::yes runs the reboot command afterwards.
    TryReport try_generation(unsigned generation, const TryOptions& opts);

    // Promotes entry `entry`: bless it, disarm, move the persistent default,
    // point the system profile at its generation, journal `good` + `promote`.
    // Safe to re-run after a crash at any step; a second call changes nothing.
    void mark_good(std::string_view entry, std::string_view reason);

    // Marks entry `entry` bad, disarms it if armed, keeps the default on the
    // newest good entry; journals `bad`. Refuses the only good entry left.
    void mark_bad(std::string_view entry, std::string_view reason);

    // Makes the good entry before the current default (by generation) the
    // default and points the profile at it; returns its ID. The `rollback`
    // record is journaled first: a power cut before the profile moved is
    // finished by the next install (finish_interrupted_rollback).
    std::string rollback(std::string_view reason);

    Status status() const;

    // The trial journal (STATE/journal).
    JournalContents history() const;

    // The entry `mark-good`/`mark-bad` act on without an argument: the booted one.
    std::optional<std::string> booted_entry() const;

    const MachineOptions& options() const { return opts_; }
    Backend& backend() { return backend_; }

private:
    InstallReport install_unlocked();
    // The journal's last word is a rollback to generation G whose profile
    // switch or default move a power cut stopped: the profile still names an
    // installed generation newer than G (a generation built since has no
    // entry yet and stays), or the default is not G's entry. Finishes it.
    void finish_interrupted_rollback();

    Backend& backend_;
    MachineOptions opts_;
};

}  // namespace nixboot
