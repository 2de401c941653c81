// grubenv (boot/grub/grubenv.*): a block that parses formats back to exactly
// 1024 bytes that parse to the same variables. A block of another size is read
// as GRUB reads it; only its variables may not fit in 1024 bytes, and then
// format_grubenv refuses with the reason. The input is tried as it is
// and, so that the fuzzer need not find the header and the padding itself,
// as the body of a block (header + input + '#' padding).
#include "boot/grub/grubenv.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot;
using namespace nixboot::grub;

namespace {

void check_block(std::string_view block) {
    GrubEnv env;
    try {
        env = parse_grubenv(block, "grubenv");
    } catch (const ParseError&) {
        return;
    }
    std::string formatted;
    try {
        formatted = format_grubenv(env);
    } catch (const Error&) {
        FUZZ_CHECK(block.size() > env_block_size);
        return;
    }
    FUZZ_CHECK(formatted.size() == env_block_size);
    FUZZ_CHECK(parse_grubenv(formatted, "formatted") == env);
    for (const EnvLine& line : env.lines())
        if (line.kind == EnvLine::Kind::variable) FUZZ_CHECK(env.get(line.name).has_value());

    // nixboot's own variable: set, written, read back.
    env.set("nixboot_tries", "1");
    try {
        FUZZ_CHECK(parse_grubenv(format_grubenv(env), "formatted").get("nixboot_tries") == "1");
    } catch (const Error&) {
        // Full block: format_grubenv refuses with the reason, never truncates.
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = fuzz::text(data, size);
    check_block(text);
    if (env_header.size() + text.size() <= env_block_size) {
        std::string block(env_header);
        block += text;
        block.resize(env_block_size, '#');
        check_block(block);
    }
    return 0;
}
