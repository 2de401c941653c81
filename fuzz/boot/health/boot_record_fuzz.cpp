// The boot record /run/nixboot/boot (boot/health/boot_record.*): what parses
// formats back, within max_boot_record_bytes, to a record that parses the same.
#include "boot/health/boot_record.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot;
using namespace nixboot::health;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    BootRecord record;
    try {
        record = parse_boot_record(fuzz::text(data, size), "boot");
    } catch (const ParseError&) {
        return 0;
    }
    FUZZ_CHECK(size <= max_boot_record_bytes);
    const std::string formatted = format_boot_record(record);
    FUZZ_CHECK(parse_boot_record(formatted, "formatted") == record);
    FUZZ_CHECK(format_boot_record(parse_boot_record(formatted, "formatted")) == formatted);
    return 0;
}
