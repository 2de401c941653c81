// loader.conf (boot/loader_conf.*): lines nixboot does not manage survive
// byte for byte, so format(parse(x)) is x (plus a final newline), and a
// managed key set and unset again round-trips.
#include "boot/loader_conf.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = fuzz::text(data, size);
    LoaderConf conf;
    try {
        conf = LoaderConf::parse(text, "loader.conf");
    } catch (const ParseError&) {
        return 0;
    }
    const std::string formatted = conf.format();
    FUZZ_CHECK(LoaderConf::parse(formatted, "formatted") == conf);
    FUZZ_CHECK(formatted.size() <= text.size() + 1);
    if (!text.empty()) FUZZ_CHECK(formatted.back() == '\n');
    FUZZ_CHECK(formatted.compare(0, text.size(), text) == 0 || text.back() != '\n');

    // The value a later `set` replaces is the one `get` returned.
    const auto old_default = conf.get("default");
    conf.set("default", "nixos-generation-1.conf");
    FUZZ_CHECK(conf.get("default") == "nixos-generation-1.conf");
    const LoaderConf reparsed = LoaderConf::parse(conf.format(), "formatted");
    FUZZ_CHECK(reparsed.get("default") == "nixos-generation-1.conf");
    FUZZ_CHECK(conf.unset("default"));
    FUZZ_CHECK(!conf.get("default"));
    (void)old_default;
    return 0;
}
