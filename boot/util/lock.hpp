// The one lock that serializes every mutating nixboot command: flock(2) on
// STATE/lock, released when the Lock is destroyed (or the process dies).
#pragma once

#include "boot/util/fd.hpp"

#include <chrono>
#include <filesystem>
#include <string_view>

namespace nixboot {

enum class LockWait { no, yes };

class Lock {
public:
    // Creates `state_dir` (0755) and `state_dir/lock` if needed and takes an
    // exclusive flock. With LockWait::no a held lock throws Error
    // "another nixboot command is running (lock '/var/lib/nixboot/lock' is held)".
    // `name` picks another lock file in the same directory (live trials use
    // "live.lock" beside the command lock).
    static Lock acquire(const std::filesystem::path& state_dir, LockWait wait = LockWait::no,
                        std::string_view name = "lock");

    // As acquire(LockWait::no), but a held lock is retried until `bound` has
    // passed (then the Error says how long it waited): for the boot check,
    // which must not lose its verdict to a concurrent install, nor wait forever.
    static Lock acquire_within(const std::filesystem::path& state_dir, std::chrono::milliseconds bound,
                               std::string_view name = "lock");

    const std::filesystem::path& path() const noexcept { return path_; }

private:
    Lock(std::filesystem::path path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
    std::filesystem::path path_;
    Fd fd_;
};

}  // namespace nixboot
