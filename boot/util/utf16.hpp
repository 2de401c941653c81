// Strict UTF-16LE <-> UTF-8 for EFI variables (untrusted input).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

enum class Terminator { required, forbidden };

// Decodes UTF-16LE. With Terminator::required the data must end with exactly
// one NUL code unit, which is not part of the result. Throws Error with the
// reason only (callers add which variable), e.g. "odd length (5 bytes)",
// "unpaired surrogate 0xd800 at byte 2", "NUL at byte 4 before the end",
// "missing NUL terminator", "longer than 4096 bytes".
std::string utf16le_to_utf8(std::span<const std::uint8_t> data, Terminator terminator, std::size_t max_bytes = 4096);

// Splits a list of NUL-terminated UTF-16LE strings (LoaderEntries) and decodes
// each strictly; empty strings are rejected, trailing NULs padding is not.
std::vector<std::string> utf16le_list_to_utf8(std::span<const std::uint8_t> data, std::size_t max_bytes = 65536);

// Encodes valid UTF-8 as UTF-16LE, with one NUL terminator if requested.
// Throws Error on invalid UTF-8 (overlong, surrogates, truncated) or NUL inside.
std::vector<std::uint8_t> utf8_to_utf16le(std::string_view text, Terminator terminator);

// Throws Error with the reason ("invalid UTF-8 at byte 3", "overlong UTF-8
// at byte 0", ...) unless `text` is valid UTF-8 (NUL allowed; callers that
// forbid control characters check those themselves).
void validate_utf8(std::string_view text);

}  // namespace nixboot
