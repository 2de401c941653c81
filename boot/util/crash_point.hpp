// A test seam for crash-point enumeration (tests/boot/crash_points_test.cpp,
// docs/testing.md): every mutating file-system or EFI-variable operation
// calls crash_point() first. Inert unless NIXBOOT_CRASH_AT or
// NIXBOOT_CRASH_LOG is set in the environment.
//
//   NIXBOOT_CRASH_LOG=FILE  appends "N KIND PATH" per operation to FILE (and
//                           "- KIND PATH" per barrier, crash_log_barrier)
//   NIXBOOT_CRASH_AT=N      _exit(crash_exit_status) at operation N (from 1)
//   NIXBOOT_CRASH_AT=N:torn the same, after doing half of operation N the way
//                           a power cut can (see CrashMode)
//
// It can only end the process early, which a power cut can do at any time
// anyway: a machine on which someone sets these has lost nothing nixboot
// promises to survive.
#pragma once

#include <string_view>

namespace nixboot {

// The exit status of a process stopped at a crash point.
inline constexpr int crash_exit_status = 86;

enum class CrashMode {
    none,    // not this operation: carry on
    before,  // (crash_point exits itself)
    torn,    // the caller leaves the operation half done, then calls crash_now()
};

// Counts one mutating operation (KIND, e.g. "write", "rename", "remove", on
// PATH); exits the process before it if it is the chosen one and the mode is
// `before`; returns CrashMode::torn if the caller is to tear it.
CrashMode crash_point(std::string_view kind, std::string_view path);
// Logs "- KIND PATH" (NIXBOOT_CRASH_LOG), neither counted nor a place to
// stop: a barrier such as a directory's fsync, after which the unsynced
// renames in that directory are durable. The enumeration models the loss of
// an unsynced rename ("write-unsynced") until its directory's barrier.
void crash_log_barrier(std::string_view kind, std::string_view path);
// Ends the process as a crash point does (no destructors, no atexit).
[[noreturn]] void crash_now();

// While one lives, crash_point() neither counts nor crashes: for an
// operation made of others that must count as one (an EFI variable, which
// firmware writes atomically, stored in a test's plain directory).
class CrashPointsPaused {
public:
    CrashPointsPaused() noexcept;
    ~CrashPointsPaused();
    CrashPointsPaused(const CrashPointsPaused&) = delete;
    CrashPointsPaused& operator=(const CrashPointsPaused&) = delete;
};

}  // namespace nixboot
