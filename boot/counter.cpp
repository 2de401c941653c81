#include "boot/counter.hpp"

#include "boot/util/error.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <map>

namespace nixboot {

namespace {

constexpr std::string_view suffixes[] = {".conf", ".efi"};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool ends_with_no_case(std::string_view s, std::string_view suffix) {
    if (s.size() < suffix.size()) return false;
    return std::equal(
        suffix.begin(), suffix.end(), s.end() - static_cast<std::ptrdiff_t>(suffix.size()), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        });
}

// systemd (bootctl 252) refuses counters above INT_MAX: "Numerical result
// out of range", and drops the entry. Match it.
constexpr unsigned max_counter = 2147483647;

// Parses all of `digits` (non-empty, only digits), at most max_counter.
std::optional<unsigned> to_unsigned(std::string_view digits) {
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc() || ptr != digits.data() + digits.size() || value > max_counter) return std::nullopt;
    return value;
}

}  // namespace

const char* to_string(CounterState state) noexcept {
    switch (state) {
        case CounterState::good: return "good";
        case CounterState::trying: return "trying";
        case CounterState::bad: return "bad";
    }
    return "?";
}

EntryName parse_entry_name(std::string_view file_name) {
    const std::string context = "entry file name '" + std::string(file_name) + "'";
    if (file_name.find('/') != std::string_view::npos) throw ParseError(context + ": contains '/'");
    if (file_name.find('\0') != std::string_view::npos) throw ParseError(context + ": contains a NUL byte");
    EntryName result;
    std::string_view base;
    for (std::string_view suffix : suffixes) {
        if (file_name.size() > suffix.size() && file_name.ends_with(suffix)) {
            result.suffix = suffix;
            base = file_name.substr(0, file_name.size() - suffix.size());
        }
    }
    if (result.suffix.empty()) throw ParseError(context + ": does not end in .conf or .efi with a name before it");
    const std::size_t plus = base.rfind('+');
    if (plus == std::string_view::npos) {
        result.stem = base;
        return result;
    }
    const std::string_view counter = base.substr(plus + 1);
    const std::string shown = "counter '+" + std::string(counter) + "'";
    const std::size_t left_len = std::find_if_not(counter.begin(), counter.end(), is_digit) - counter.begin();
    if (left_len == 0) throw ParseError(context + ": " + shown + " is not +LEFT or +LEFT-DONE");
    Counter value;
    const auto left = to_unsigned(counter.substr(0, left_len));
    if (!left) throw ParseError(context + ": " + shown + " has a number larger than 2147483647");
    value.left = *left;
    std::string_view rest = counter.substr(left_len);
    if (!rest.empty()) {
        if (rest.front() != '-' || rest.size() == 1 || !std::all_of(rest.begin() + 1, rest.end(), is_digit))
            throw ParseError(context + ": " + shown + " is not +LEFT or +LEFT-DONE");
        const auto done = to_unsigned(rest.substr(1));
        if (!done) throw ParseError(context + ": " + shown + " has a number larger than 2147483647");
        value.done = *done;
    }
    result.stem = base.substr(0, plus);
    if (result.stem.empty()) throw ParseError(context + ": nothing before the counter");
    result.counter = value;
    return result;
}

std::optional<EntryName> try_parse_entry_name(std::string_view file_name) noexcept {
    try {
        return parse_entry_name(file_name);
    } catch (...) {
        return std::nullopt;
    }
}

std::string format_entry_name(const EntryName& name) {
    std::string out = name.stem;
    if (name.counter) {
        // Always "+LEFT-DONE", "-0" included: the fixed width the Boot Loader
        // Specification recommends on FAT (uapi-group/specifications PR #168),
        // so systemd-boot's rename of a new trial (+3-0 to +2-1) keeps the
        // name's length and needs no other long-file-name slot. systemd-boot
        // itself always writes this form (src/boot/boot.c
        // config_entry_parse_tries, 252 to 262: "%s+%u-%u%s"), and so does
        // bless-boot's "bad" (+0-DONE).
        out += '+';
        out += std::to_string(name.counter->left);
        out += '-';
        out += std::to_string(name.counter->done);
    }
    out += name.suffix;
    return out;
}

CounterState counter_state(const EntryName& name) noexcept {
    if (!name.counter) return CounterState::good;
    return name.counter->left > 0 ? CounterState::trying : CounterState::bad;
}

EntryName make_good(EntryName name) {
    name.counter.reset();
    return name;
}

EntryName make_bad(EntryName name) {
    const unsigned done = name.counter ? name.counter->done : 0;
    name.counter = Counter{0, done};
    return name;
}

EntryName decrement(EntryName name) {
    if (!name.counter) return name;
    if (name.counter->left > 0) --name.counter->left;
    if (name.counter->done < max_counter) ++name.counter->done;
    return name;
}

EntryName make_trial(EntryName name, unsigned tries) {
    name.counter = Counter{tries, 0};
    return name;
}

EntryScan scan_entry_names(const std::vector<std::string>& file_names, std::string_view suffix_filter) {
    EntryScan scan;
    std::map<std::string, std::vector<std::string>> by_id;
    for (const std::string& file_name : file_names) {
        // What systemd-boot reads from \loader\entries (src/boot/boot.c,
        // config_load_type1_entries, 252 to 262): names ending in ".conf" in
        // any case, except hidden ones and those starting with "auto-" (its
        // own automatic entries' IDs).
        if (!suffix_filter.empty() && !ends_with_no_case(file_name, suffix_filter)) continue;
        if (file_name.starts_with('.')) continue;
        if (suffix_filter == ".conf" && file_name.starts_with("auto-")) continue;
        if (!std::string_view(file_name).ends_with(suffix_filter)) {
            // "X.CONF": the loader shows it, but reads a counter only before
            // ".conf" exactly (config_entry_parse_tries: streq16 with the
            // suffix), so it is an entry without one, named as it is.
            const std::size_t cut = file_name.size() - suffix_filter.size();
            EntryName name;
            name.stem = file_name.substr(0, cut);
            name.suffix = file_name.substr(cut);
            by_id[name.stem + name.suffix].push_back(file_name);
            scan.entries.push_back(EntryFile{file_name, std::move(name)});
            continue;
        }
        try {
            EntryName name = parse_entry_name(file_name);
            by_id[name.stem + name.suffix].push_back(file_name);
            scan.entries.push_back(EntryFile{file_name, std::move(name)});
        } catch (const ParseError& e) {
            scan.rejected.push_back(RejectedName{file_name, e.what()});
        }
    }
    for (auto& [id, names] : by_id) {
        if (names.size() < 2) continue;
        std::sort(names.begin(), names.end());
        scan.duplicates.push_back(names);
    }
    return scan;
}

std::size_t torn_rename_survivor(const std::vector<EntryFile>& names, std::string_view boot_count_name) {
    for (std::size_t i = 0; i < names.size(); ++i)
        if (!boot_count_name.empty() && names[i].file_name == boot_count_name) return i;
    // Further along = greater: no counter, then more done, then fewer left.
    auto further = [](const EntryName& a, const EntryName& b) {
        if (!a.counter || !b.counter) return !a.counter && b.counter;
        if (a.counter->done != b.counter->done) return a.counter->done > b.counter->done;
        return a.counter->left < b.counter->left;
    };
    std::size_t best = 0;
    for (std::size_t i = 1; i < names.size(); ++i)
        if (further(names[i].name, names[best].name)) best = i;
    return best;
}

}  // namespace nixboot
