// Shared by the libFuzzer harnesses (fuzz/, scripts/fuzz): each harness feeds
// one parser arbitrary bytes and asserts what its header promises beyond "no
// crash": the round trip parse(format(parse(x))) == parse(x) and the size
// bounds. A parser may refuse input only with nixboot::Error (ParseError,
// UsageError); any other exception escapes the harness and libFuzzer reports
// it as a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace nixboot::fuzz {

inline std::string_view text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

[[noreturn]] inline void fail(const char* what, const char* file, int line) {
    std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
    std::abort();
}

}  // namespace nixboot::fuzz

// An invariant of the parser under test; abort() (a crash to libFuzzer) if false.
#define FUZZ_CHECK(cond)                                               \
    do {                                                               \
        if (!(cond)) ::nixboot::fuzz::fail(#cond, __FILE__, __LINE__); \
    } while (0)
