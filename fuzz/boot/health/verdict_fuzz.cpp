// The verdict file RUN/nixboot/verdict (boot/health/verdict.*): what parses
// formats back to text that parses to the same decision.
#include "boot/health/verdict.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot;
using namespace nixboot::health;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Decision decision;
    try {
        decision = parse_verdict(fuzz::text(data, size), "verdict");
    } catch (const ParseError&) {
        return 0;
    }
    const std::string formatted = format_verdict(decision);
    FUZZ_CHECK(parse_verdict(formatted, "formatted") == decision);
    FUZZ_CHECK(formatted.size() <= size + 2);
    return 0;
}
