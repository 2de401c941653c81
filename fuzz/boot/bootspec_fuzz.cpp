// bootspec JSON (boot/bootspec.*): a document that parses formats back to
// JSON that parses to the same document, within the documented bounds.
#include "boot/bootspec.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot;

namespace {

void check_bounds(const BootSpec& spec) {
    FUZZ_CHECK(spec.kernel_params.size() <= 1024);
    FUZZ_CHECK(spec.label.size() <= 4096 && spec.kernel.size() <= 4096 && spec.init.size() <= 4096);
    FUZZ_CHECK(!spec.kernel.empty() && spec.kernel.front() == '/');
    FUZZ_CHECK(!spec.init.empty() && spec.init.front() == '/');
    if (spec.initrd) FUZZ_CHECK(!spec.initrd->empty() && spec.initrd->front() == '/');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    BootDocument doc;
    try {
        doc = parse_bootspec(fuzz::text(data, size), "boot.json");
    } catch (const ParseError&) {
        return 0;
    }
    check_bounds(doc.boot);
    FUZZ_CHECK(doc.specialisations.size() <= 256);
    for (const auto& [name, spec] : doc.specialisations) {
        validate_specialisation_name(name, "fuzz");
        check_bounds(spec);
    }
    const std::string formatted = format_bootspec(doc);
    FUZZ_CHECK(parse_bootspec(formatted, "formatted") == doc);
    return 0;
}
