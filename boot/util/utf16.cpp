#include "boot/util/utf16.hpp"

#include "boot/util/error.hpp"

#include <cstdio>

namespace nixboot {

namespace {

std::string hex16(unsigned value) {
    char buffer[16];
    std::snprintf(buffer, sizeof buffer, "0x%04x", value);
    return buffer;
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

// Decodes code units [0, count) of `data` (no NUL allowed inside).
std::string decode_units(std::span<const std::uint8_t> data, std::size_t count, std::size_t byte_offset) {
    std::string out;
    out.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t at = byte_offset + 2 * i;
        const unsigned unit = data[2 * i] | (static_cast<unsigned>(data[2 * i + 1]) << 8);
        if (unit == 0) throw Error("NUL at byte " + std::to_string(at) + " before the end");
        if (unit >= 0xdc00 && unit <= 0xdfff)
            throw Error("unpaired surrogate " + hex16(unit) + " at byte " + std::to_string(at));
        if (unit >= 0xd800 && unit <= 0xdbff) {
            if (i + 1 >= count) throw Error("unpaired surrogate " + hex16(unit) + " at byte " + std::to_string(at));
            const unsigned low = data[2 * i + 2] | (static_cast<unsigned>(data[2 * i + 3]) << 8);
            if (low < 0xdc00 || low > 0xdfff)
                throw Error("unpaired surrogate " + hex16(unit) + " at byte " + std::to_string(at));
            append_utf8(out, 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00));
            ++i;
            continue;
        }
        append_utf8(out, unit);
    }
    return out;
}

}  // namespace

std::string utf16le_to_utf8(std::span<const std::uint8_t> data, Terminator terminator, std::size_t max_bytes) {
    if (data.size() > max_bytes) throw Error("longer than " + std::to_string(max_bytes) + " bytes");
    if (data.size() % 2 != 0) throw Error("odd length (" + std::to_string(data.size()) + " bytes)");
    std::size_t units = data.size() / 2;
    if (terminator == Terminator::required) {
        if (units == 0 || data[data.size() - 2] != 0 || data[data.size() - 1] != 0)
            throw Error("missing NUL terminator");
        --units;
    }
    return decode_units(data, units, 0);
}

std::vector<std::string> utf16le_list_to_utf8(std::span<const std::uint8_t> data, std::size_t max_bytes) {
    if (data.size() > max_bytes) throw Error("longer than " + std::to_string(max_bytes) + " bytes");
    if (data.size() % 2 != 0) throw Error("odd length (" + std::to_string(data.size()) + " bytes)");
    std::vector<std::string> out;
    const std::size_t units = data.size() / 2;
    std::size_t start = 0;
    while (start < units) {
        std::size_t end = start;
        while (end < units && (data[2 * end] | data[2 * end + 1]) != 0) ++end;
        if (end == units) throw Error("missing NUL terminator after the last string");
        if (end == start) {
            // Trailing NUL padding after the last string is tolerated; an
            // empty string between two strings is not.
            for (std::size_t k = start; k < units; ++k)
                if ((data[2 * k] | data[2 * k + 1]) != 0)
                    throw Error("empty string at byte " + std::to_string(2 * start));
            break;
        }
        out.push_back(decode_units(data.subspan(2 * start), end - start, 2 * start));
        start = end + 1;
    }
    return out;
}

namespace {

// Decodes the UTF-8 sequence at byte i of `text` into `cp`; returns its
// length. Throws Error naming the byte for anything invalid.
std::size_t decode_utf8(std::string_view text, std::size_t i, char32_t& cp) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    {
        const unsigned char c = s[i];
        std::size_t len = 0;
        if (c < 0x80) {
            cp = c;
            len = 1;
        } else if ((c & 0xe0) == 0xc0) {
            cp = c & 0x1f;
            len = 2;
        } else if ((c & 0xf0) == 0xe0) {
            cp = c & 0x0f;
            len = 3;
        } else if ((c & 0xf8) == 0xf0) {
            cp = c & 0x07;
            len = 4;
        } else {
            throw Error("invalid UTF-8 at byte " + std::to_string(i));
        }
        if (i + len > n) throw Error("truncated UTF-8 sequence at byte " + std::to_string(i));
        for (std::size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xc0) != 0x80) throw Error("invalid UTF-8 at byte " + std::to_string(i));
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        static constexpr char32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_len[len]) throw Error("overlong UTF-8 at byte " + std::to_string(i));
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            throw Error("invalid code point in UTF-8 at byte " + std::to_string(i));
        return len;
    }
}

}  // namespace

void validate_utf8(std::string_view text) {
    char32_t cp = 0;
    for (std::size_t i = 0; i < text.size();) i += decode_utf8(text, i, cp);
}

std::vector<std::uint8_t> utf8_to_utf16le(std::string_view text, Terminator terminator) {
    std::vector<std::uint8_t> out;
    out.reserve(2 * text.size() + 2);
    auto put = [&](unsigned unit) {
        out.push_back(static_cast<std::uint8_t>(unit & 0xff));
        out.push_back(static_cast<std::uint8_t>(unit >> 8));
    };
    for (std::size_t i = 0; i < text.size();) {
        if (text[i] == '\0') throw Error("NUL at byte " + std::to_string(i));
        char32_t cp = 0;
        const std::size_t len = decode_utf8(text, i, cp);
        if (cp >= 0x10000) {
            const char32_t v = cp - 0x10000;
            put(0xd800 + static_cast<unsigned>(v >> 10));
            put(0xdc00 + static_cast<unsigned>(v & 0x3ff));
        } else {
            put(static_cast<unsigned>(cp));
        }
        i += len;
    }
    if (terminator == Terminator::required) put(0);
    return out;
}

}  // namespace nixboot
