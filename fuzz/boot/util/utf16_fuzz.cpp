// UTF-16LE <-> UTF-8 (boot/util/utf16.*), the decoding of every EFI string
// variable: what decodes re-encodes to the same bytes, decoding respects its
// size bound (on the UTF-16 bytes; UTF-8 takes at most 3 bytes per 2), and
// text the validator accepts survives UTF-8 -> UTF-16 -> UTF-8.
#include "boot/util/error.hpp"
#include "boot/util/utf16.hpp"
#include "fuzz/fuzz.hpp"

#include <span>
#include <string>
#include <vector>

using namespace nixboot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> bytes(data, size);
    constexpr std::size_t max = 512;
    for (Terminator terminator : {Terminator::required, Terminator::forbidden}) {
        try {
            const std::string decoded = utf16le_to_utf8(bytes, terminator, max);
            FUZZ_CHECK(size <= max && decoded.size() <= size / 2 * 3);
            validate_utf8(decoded);
            FUZZ_CHECK(utf8_to_utf16le(decoded, terminator) == std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
        } catch (const Error&) {}
    }
    try {
        const std::vector<std::string> list = utf16le_list_to_utf8(bytes, 4096);
        std::size_t total = 0;
        for (const std::string& item : list) {
            FUZZ_CHECK(!item.empty());
            total += utf8_to_utf16le(item, Terminator::required).size();
        }
        FUZZ_CHECK(total <= size);
    } catch (const Error&) {}

    const std::string_view text = fuzz::text(data, size);
    bool valid = true;
    try {
        validate_utf8(text);
    } catch (const Error&) {
        valid = false;
    }
    if (valid && text.find('\0') == std::string_view::npos) {
        const std::vector<std::uint8_t> encoded = utf8_to_utf16le(text, Terminator::forbidden);
        FUZZ_CHECK(encoded.size() <= 2 * text.size());
        FUZZ_CHECK(utf16le_to_utf8(encoded, Terminator::forbidden, encoded.size()) == text);
    }
    return 0;
}
