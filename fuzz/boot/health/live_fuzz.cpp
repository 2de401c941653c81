// The live-trial record STATE/live (boot/health/live.*): what parses formats
// back to text that parses to the same trial.
#include "boot/health/live.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot;
using namespace nixboot::health;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    LiveTrial trial;
    try {
        trial = parse_live_trial(fuzz::text(data, size), "live");
    } catch (const ParseError&) {
        return 0;
    }
    const std::string formatted = format_live_trial(trial);
    FUZZ_CHECK(parse_live_trial(formatted, "formatted") == trial);
    return 0;
}
