// BLS entries (boot/bls_entry.*): what parses formats back to text that
// parses to the same entry (what nixboot writes it can read), and formatting
// is stable.
#include "boot/bls_entry.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

using namespace nixboot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    BlsEntry entry;
    try {
        entry = parse_bls_entry(fuzz::text(data, size), "fuzz.conf");
    } catch (const ParseError&) {
        return 0;
    }
    const std::string formatted = format_bls_entry(entry);
    const BlsEntry again = parse_bls_entry(formatted, "formatted.conf");
    FUZZ_CHECK(again == entry);
    FUZZ_CHECK(format_bls_entry(again) == formatted);
    return 0;
}
