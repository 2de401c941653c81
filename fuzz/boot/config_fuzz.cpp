// The config file (boot/config.*): parsing refuses only with UsageError,
// keeps settings within the file's lines, and applying a parsed file either
// works or refuses with UsageError naming the line.
#include "boot/config.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <algorithm>

using namespace nixboot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = fuzz::text(data, size);
    ConfigFile file;
    try {
        file = parse_config_file(text, "nixboot.conf");
    } catch (const UsageError&) {
        return 0;
    }
    const auto lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
    FUZZ_CHECK(file.settings.size() <= lines);
    for (const ConfigSetting& setting : file.settings) FUZZ_CHECK(setting.line >= 1 && setting.line <= lines);
    Config config;
    try {
        apply_config_file(config, file, "nixboot.conf");
    } catch (const UsageError&) {}
    return 0;
}
