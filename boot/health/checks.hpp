// Health checks: executables in CHECKS_DIR/required/NAME and
// CHECKS_DIR/wanted/NAME (docs/contracts.md), run in parallel without a shell,
// each in its own process group with its own timeout. Output lines go to a
// sink, prefixed "NAME: "; the library itself prints nothing.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <vector>

namespace nixboot::health {

enum class CheckKind { required, wanted };
const char* to_string(CheckKind kind) noexcept;  // "required" | "wanted"

// Output lines longer than this reach the sink in pieces (CheckSpec::max_line_bytes).
inline constexpr std::size_t default_max_line_bytes = 4096;

struct CheckSpec {
    std::string name;
    CheckKind kind = CheckKind::required;
    std::filesystem::path path;
    std::vector<std::string> args;  // argv[1..]
    std::chrono::milliseconds timeout{60000};
    std::vector<std::string> env;  // "NAME=VALUE" added to (or replacing in) the inherited environment
    // A longer output line reaches the sink in pieces of this size.
    std::size_t max_line_bytes = default_max_line_bytes;
};

struct CheckRefusal {
    std::string name;
    CheckKind kind = CheckKind::required;
    std::filesystem::path path;
    std::string reason;  // "writable by group or others (mode 0777)"
};

struct CheckDiscovery {
    std::vector<CheckSpec> checks;      // sorted: required first, then by name
    std::vector<CheckRefusal> refused;  // not run, with the reason
    // Files in the checks directory itself (not in required/ or wanted/),
    // which never run: one line each, naming the file and where it belongs.
    std::vector<std::string> ignored;
};

// Why a file with status `st` must not run as a check, or nullopt if it may:
// not a regular file, owned by neither root nor the user running nixboot,
// writable by group or others, not executable. (Symlinks are followed by the
// caller: the target counts.)
std::optional<std::string> refusal_reason(const struct stat& st);

// Per-check settings: default timeout (config `check-timeout`) and the
// [check.NAME] sections (key "timeout", seconds).
struct CheckSettings {
    std::chrono::seconds default_timeout{60};
    std::map<std::string, std::map<std::string, std::string>> sections;
};

// Lists both subdirectories (a missing subdirectory is empty). Throws Error
// "checks directory 'DIR': No such file or directory" when DIR itself is
// missing or not a directory, and UsageError for a bad [check.NAME] timeout.
CheckDiscovery discover_checks(const std::filesystem::path& dir, const CheckSettings& settings);

enum class CheckOutcome { passed, failed, timed_out, not_started };
const char* to_string(CheckOutcome outcome) noexcept;  // "passed", "failed", "timed out", "not started"

struct CheckResult {
    std::string name;
    CheckKind kind = CheckKind::required;
    CheckOutcome outcome = CheckOutcome::not_started;
    std::optional<int> exit_code;  // when it exited
    std::optional<int> signal;     // when a signal ended it
    std::chrono::milliseconds duration{0};
    std::string detail;  // one line: "exit status 1", "killed after the 30 s timeout", spawn error
};

// Receives one line of check output at a time, already prefixed "NAME: ".
using OutputSink = std::function<void(std::string_view line)>;

// Runs every check at once (posix_spawn, no shell, stdin /dev/null, stdout
// and stderr to a pipe, own process group). A check that passes its timeout
// has its whole process group killed. Returns results in the order of
// `checks`. Also kills each group once its leader exits (no stragglers).
std::vector<CheckResult> run_checks(const std::vector<CheckSpec>& checks, const OutputSink& sink);

// "NAME: passed in 12 ms" / "NAME: failed (exit status 1)" — one line.
std::string describe(const CheckResult& result);

}  // namespace nixboot::health
