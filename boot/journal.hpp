// The trial journal: STATE/journal, one JSON object a line, append-only
// (docs/contracts.md). A crash can leave a torn last line: readers report it
// and go on; the next append starts on a fresh line.
#pragma once

#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

enum class JournalEvent {
    install,
    adopt,
    arm,
    boot,
    good,
    bad,
    promote,
    default_,
    rollback,
    live_start,
    live_confirm,
    live_revert,
    gc,
};
// "install", ..., "default", ..., "live-start", "live-confirm", "live-revert", "gc".
const char* to_string(JournalEvent event) noexcept;
// Inverse of to_string; nullopt for an unknown name.
std::optional<JournalEvent> parse_journal_event(std::string_view name) noexcept;

struct JournalRecord {
    std::time_t time = 0;  // written as "2026-11-26T01:00:41Z" (UTC)
    JournalEvent event = JournalEvent::install;
    std::optional<unsigned> generation;  // null when not about one generation
    std::string entry;                   // entry ID, e.g. "nixos-generation-5" ("" if none)
    std::string file;                    // entry file relative to the ESP ("" if none)
    std::string bootloader;              // "systemd-boot" | "grub" | ""
    std::string boot_id;                 // current_boot_id() at the time
    std::string reason;                  // human sentence
    bool operator==(const JournalRecord&) const = default;
};

// One JSON object, no newline. Keys as in docs/contracts.md.
std::string format_journal_line(const JournalRecord& record);
// Throws ParseError "ORIGIN: REASON" for bad JSON, missing or mistyped keys,
// an unknown event. Unknown extra keys are ignored.
JournalRecord parse_journal_line(std::string_view line, std::string_view origin);

// Appends one line to STATE/journal (creating STATE and the file) and fsyncs.
void append_journal(const std::filesystem::path& state_dir, const JournalRecord& record);

// Opens STATE/journal for appending (creating it empty) and writes nothing:
// a mutating command calls it before its first change, so a journal that
// cannot be written (a directory in its place, a read-only state directory)
// stops the command while nothing has happened yet.
void check_journal_writable(const std::filesystem::path& state_dir);

struct JournalProblem {
    unsigned line = 0;    // 1-based
    std::string message;  // ParseError text, or "...: torn last line (no newline)"
};
struct JournalContents {
    std::vector<JournalRecord> records;    // in file order
    std::vector<JournalProblem> problems;  // lines that were skipped
};
// Reads STATE/journal (empty if absent). Bad or torn lines are skipped and
// reported in `problems`; only I/O errors throw. Max 64 MiB.
JournalContents read_journal(const std::filesystem::path& state_dir);

// The last whole record of STATE/journal, read from its end (cheap however
// long the journal is); nullopt if there is none or it does not parse.
std::optional<JournalRecord> last_journal_record(const std::filesystem::path& state_dir);

// The rollback the journal ends on, if any: its last outcome record (adopt,
// arm, good, promote, bad, rollback, live-start, live-confirm, live-revert)
// is a `rollback`, or a `live-revert` or `bad` of an entry armed (or
// live-started) before it and not judged since (the machine left a trial for
// its fallback; a `bad` of an entry nobody armed, or the `live-revert` of a
// trial dropped before it was armed, is no rollback). nullopt otherwise, so a new
// trial or promotion ends it.
std::optional<JournalRecord> last_rollback(const std::vector<JournalRecord>& records);

// "generation 42 was rolled back at 2026-12-03T09:00:00Z: REASON" (or "rolled
// back to generation 41 at ...", for a `rollback` record).
std::string describe_rollback(const JournalRecord& record);

// STATE/rollback-announced: the journal line of the last rollback that
// `nixboot check` announced (started nixboot-rolled-back.target for).
inline constexpr const char* rollback_announced_name = "rollback-announced";

// The kernel's boot id (a UUID, 36 chars), from `source`. Throws Error if
// unreadable or not a UUID.
std::string current_boot_id(const std::filesystem::path& source = "/proc/sys/kernel/random/boot_id");

// Now, as journal time.
std::time_t journal_now() noexcept;

}  // namespace nixboot
