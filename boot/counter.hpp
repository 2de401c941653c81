// Boot Loader Specification boot counters in file names, exactly as systemd's
// bless-boot and systemd-boot read them: NAME[+LEFT[-DONE]].conf|.efi, where
// the LAST '+' in the name (before the suffix) starts the counter.
#pragma once

#include <compare>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

struct Counter {
    unsigned left = 0;
    unsigned done = 0;
    auto operator<=>(const Counter&) const = default;
};

// What a file name says about its entry: no counter = good; LEFT > 0 =
// trying (indeterminate); LEFT = 0 = bad.
enum class CounterState { good, trying, bad };
const char* to_string(CounterState state) noexcept;  // "good" | "trying" | "bad"

struct EntryName {
    std::string stem;                // e.g. "nixos-generation-5" (the entry ID)
    std::optional<Counter> counter;  // nullopt = no counter
    std::string suffix;              // ".conf" or ".efi"
    bool operator==(const EntryName&) const = default;
};

// Parses a bare file name (no '/'). Throws ParseError
// "entry file name 'X': REASON" for: no ".conf"/".efi" suffix, empty stem,
// a '+' not followed by LEFT or LEFT-DONE digits, a number > 2147483647 (systemd's limit).
EntryName parse_entry_name(std::string_view file_name);
// The same, returning nullopt instead of throwing.
std::optional<EntryName> try_parse_entry_name(std::string_view file_name) noexcept;
// Inverse of parse_entry_name: stem + "+L-D" (fixed width: "-0" too) + suffix.
// A name read without "-DONE" ("a+1.conf") formats as "a+1-0.conf".
std::string format_entry_name(const EntryName& name);

CounterState counter_state(const EntryName& name) noexcept;
// Counter removed (bless-boot "good").
EntryName make_good(EntryName name);
// LEFT = 0, DONE kept (bless-boot "bad"); a name without counter gets +0.
EntryName make_bad(EntryName name);
// What systemd-boot does when it boots a counted entry: LEFT-1 (not below 0),
// DONE+1. A name without counter is returned unchanged.
EntryName decrement(EntryName name);
// A trial name with `tries` left and nothing done: stem+TRIES-0+suffix.
EntryName make_trial(EntryName name, unsigned tries);

// The result of classifying the file names of a directory (loader/entries).
struct EntryFile {
    std::string file_name;
    EntryName name;
};
struct RejectedName {
    std::string file_name;
    std::string reason;  // ParseError text of parse_entry_name
};
struct EntryScan {
    std::vector<EntryFile> entries;      // parsed, in input order
    std::vector<RejectedName> rejected;  // garbage counters, wrong suffix
    // Groups (>= 2 file names) that share stem and suffix, e.g. "a+1.conf"
    // and "a.conf": the same entry twice. Sorted; the backend decides.
    std::vector<std::vector<std::string>> duplicates;
};
// Pure: classifies `file_names` (e.g. RootDir::list("loader/entries")).
// Names not ending in `suffix_filter` (e.g. ".conf"), in any case, and hidden
// names are ignored silently; with ".conf" also "auto-*" names, as
// systemd-boot does. A name whose suffix differs in case ("A+1.CONF") is an
// entry without counter whose stem is everything before the suffix.
EntryScan scan_entry_names(const std::vector<std::string>& file_names, std::string_view suffix_filter = ".conf");

// Of the file names of one entry (one of EntryScan::duplicates: a rename cut
// short on FAT can leave both the old and the new name, pointing at one
// cluster chain), the index of the name that holds the entry's state: the
// one LoaderBootCountPath names (`boot_count_name`: systemd-boot renamed to
// it this boot, and bless-boot renames only it), else the one furthest along:
// a name without counter (a verdict followed the rename), then the most
// tries done, then the fewest left. The others are stale. `names` non-empty.
std::size_t torn_rename_survivor(const std::vector<EntryFile>& names, std::string_view boot_count_name = {});

}  // namespace nixboot
