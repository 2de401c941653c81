// One journal line (boot/journal.*): what parses formats back to one line
// (no newline: a record can never split into two) that parses the same.
#include "boot/journal.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    JournalRecord record;
    try {
        record = parse_journal_line(fuzz::text(data, size), "journal:1");
    } catch (const ParseError&) {
        return 0;
    }
    const std::string formatted = format_journal_line(record);
    FUZZ_CHECK(formatted.find('\n') == std::string::npos);
    FUZZ_CHECK(parse_journal_line(formatted, "formatted") == record);
    FUZZ_CHECK(parse_journal_event(to_string(record.event)) == record.event);
    return 0;
}
