// Counter names (boot/counter.*): the throwing and non-throwing parsers
// agree, format/parse round-trip, every transition yields a name that parses
// back, and a directory scan accounts for every name it is given.
#include "boot/counter.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>
#include <vector>

using namespace nixboot;

namespace {

void check_round_trip(const EntryName& name) {
    const std::string formatted = format_entry_name(name);
    FUZZ_CHECK(parse_entry_name(formatted) == name);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = fuzz::text(data, size);
    const std::optional<EntryName> parsed = try_parse_entry_name(text);
    bool refused = false;
    try {
        const EntryName name = parse_entry_name(text);
        FUZZ_CHECK(parsed && name == *parsed);
    } catch (const ParseError&) {
        refused = true;
    }
    FUZZ_CHECK(refused == !parsed);
    if (parsed) {
        check_round_trip(*parsed);
        // Counters are written fixed-width: a name read without "-DONE" gains
        // "-0", and leading zeros are dropped; nothing else grows.
        FUZZ_CHECK(format_entry_name(*parsed).size() <= text.size() + 2);
        // A stem may hold '+' (the last one starts the counter, as in
        // systemd): "a+b+1.conf" marked good is "a+b.conf", which reads as a
        // garbage counter, for nixboot as for bless-boot. nixboot's own
        // stems never hold '+' (validate_specialisation_name).
        if (parsed->stem.find('+') == std::string::npos) check_round_trip(make_good(*parsed));
        FUZZ_CHECK(counter_state(make_good(*parsed)) == CounterState::good);
        check_round_trip(make_bad(*parsed));
        FUZZ_CHECK(counter_state(make_bad(*parsed)) == CounterState::bad);
        check_round_trip(decrement(*parsed));
        check_round_trip(make_trial(*parsed, 3));
    }

    // The same bytes as a directory listing, one name a line.
    std::vector<std::string> names;
    for (std::string_view rest = text; !rest.empty();) {
        const auto nl = rest.find('\n');
        names.emplace_back(rest.substr(0, nl));
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    }
    const EntryScan scan = scan_entry_names(names);
    FUZZ_CHECK(scan.entries.size() + scan.rejected.size() <= names.size());
    for (const EntryFile& entry : scan.entries) {
        if (std::string_view(entry.file_name).ends_with(".conf")) {
            FUZZ_CHECK(parse_entry_name(entry.file_name) == entry.name);
        } else {
            // "X.CONF" in another case: an entry without a counter, named as
            // it is (systemd-boot reads a counter only before ".conf").
            FUZZ_CHECK(!entry.name.counter && entry.name.stem + entry.name.suffix == entry.file_name);
        }
    }
    for (const auto& group : scan.duplicates) FUZZ_CHECK(group.size() >= 2);
    return 0;
}
