#include "boot/util/utf16.hpp"

#include "boot/util/error.hpp"

#include "tests/catch.hpp"

#include <random>

using namespace nixboot;

namespace {
std::vector<std::uint8_t> bytes(std::initializer_list<int> list) {
    std::vector<std::uint8_t> out;
    for (int b : list) out.push_back(static_cast<std::uint8_t>(b));
    return out;
}
}  // namespace

TEST_CASE("UTF-16LE decodes what systemd-boot writes", "[util][utf16]") {
    // "a+1.conf" with NUL terminator.
    const auto data = utf8_to_utf16le("a+1.conf", Terminator::required);
    CHECK(data.size() == 18);
    CHECK(data[16] == 0);
    CHECK(data[17] == 0);
    CHECK(utf16le_to_utf8(data, Terminator::required) == "a+1.conf");
    CHECK(utf16le_to_utf8(bytes({0x41, 0, 0xe9, 0, 0xac, 0x20, 0x3d, 0xd8, 0x00, 0xde, 0, 0}), Terminator::required) ==
          "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    CHECK(utf16le_to_utf8(bytes({0, 0}), Terminator::required).empty());
    CHECK(utf16le_to_utf8(bytes({0x41, 0}), Terminator::forbidden) == "A");
}

TEST_CASE("UTF-16LE rejects malformed input with the reason", "[util][utf16]") {
    CHECK_THROWS_WITH(utf16le_to_utf8(bytes({0x41, 0, 0}), Terminator::required), "odd length (3 bytes)");
    CHECK_THROWS_WITH(utf16le_to_utf8(bytes({0x41, 0}), Terminator::required), "missing NUL terminator");
    CHECK_THROWS_WITH(utf16le_to_utf8({}, Terminator::required), "missing NUL terminator");
    CHECK_THROWS_WITH(utf16le_to_utf8(bytes({0x00, 0xd8, 0x41, 0, 0, 0}), Terminator::required),
                      "unpaired surrogate 0xd800 at byte 0");
    CHECK_THROWS_WITH(utf16le_to_utf8(bytes({0x41, 0, 0x00, 0xdc, 0, 0}), Terminator::required),
                      "unpaired surrogate 0xdc00 at byte 2");
    CHECK_THROWS_WITH(utf16le_to_utf8(bytes({0x41, 0, 0x00, 0xd8, 0, 0}), Terminator::required),
                      "unpaired surrogate 0xd800 at byte 2");
    CHECK_THROWS_WITH(utf16le_to_utf8(bytes({0x41, 0, 0, 0, 0x42, 0, 0, 0}), Terminator::required),
                      "NUL at byte 2 before the end");
    const std::vector<std::uint8_t> big(4098, 0x41);
    CHECK_THROWS_WITH(utf16le_to_utf8(big, Terminator::required), "longer than 4096 bytes");
}

TEST_CASE("UTF-16LE lists (LoaderEntries)", "[util][utf16]") {
    std::vector<std::uint8_t> data;
    for (const char* s : {"nixos-generation-2+2-0.conf", "nixos-generation-1.conf", "auto-reboot-to-firmware-setup"}) {
        const auto one = utf8_to_utf16le(s, Terminator::required);
        data.insert(data.end(), one.begin(), one.end());
    }
    CHECK(utf16le_list_to_utf8(data) == std::vector<std::string>{"nixos-generation-2+2-0.conf",
                                                                 "nixos-generation-1.conf",
                                                                 "auto-reboot-to-firmware-setup"});
    data.push_back(0);
    data.push_back(0);  // trailing padding is tolerated
    CHECK(utf16le_list_to_utf8(data).size() == 3);
    CHECK(utf16le_list_to_utf8({}).empty());
    CHECK_THROWS_WITH(utf16le_list_to_utf8(bytes({0x41, 0, 0, 0, 0, 0, 0x42, 0, 0, 0})), "empty string at byte 4");
    CHECK_THROWS_WITH(utf16le_list_to_utf8(bytes({0x41, 0, 0x42, 0})), "missing NUL terminator after the last string");
    CHECK_THROWS_WITH(utf16le_list_to_utf8(bytes({0x41, 0, 0})), "odd length (3 bytes)");
}

TEST_CASE("UTF-8 encoding rejects invalid UTF-8", "[util][utf16]") {
    CHECK_THROWS_WITH(utf8_to_utf16le("a\xc0\x80", Terminator::required), "overlong UTF-8 at byte 1");
    CHECK_THROWS_WITH(utf8_to_utf16le("\xed\xa0\x80", Terminator::required), "invalid code point in UTF-8 at byte 0");
    CHECK_THROWS_WITH(utf8_to_utf16le("ab\xe2\x82", Terminator::required), "truncated UTF-8 sequence at byte 2");
    CHECK_THROWS_WITH(utf8_to_utf16le("\xff", Terminator::required), "invalid UTF-8 at byte 0");
    CHECK_THROWS_WITH(utf8_to_utf16le(std::string_view("a\0b", 3), Terminator::required), "NUL at byte 1");
}

TEST_CASE("UTF-16LE round trips generated strings", "[util][utf16]") {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<std::uint32_t> plane(0, 3);
    for (int round = 0; round < 2000; ++round) {
        std::u32string cps;
        const int len = static_cast<int>(rng() % 40);
        for (int i = 0; i < len; ++i) {
            char32_t cp = 0;
            switch (plane(rng)) {
                case 0: cp = 1 + rng() % 0x7f; break;
                case 1: cp = 0x80 + rng() % (0xd800 - 0x80); break;
                case 2: cp = 0xe000 + rng() % (0x10000 - 0xe000); break;
                default: cp = 0x10000 + rng() % (0x110000 - 0x10000); break;
            }
            cps.push_back(cp);
        }
        // Encode the code points to UTF-8 by hand, then through both directions.
        std::string utf8;
        for (char32_t cp : cps) {
            if (cp < 0x80)
                utf8 += static_cast<char>(cp);
            else if (cp < 0x800) {
                utf8 += static_cast<char>(0xc0 | (cp >> 6));
                utf8 += static_cast<char>(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                utf8 += static_cast<char>(0xe0 | (cp >> 12));
                utf8 += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
                utf8 += static_cast<char>(0x80 | (cp & 0x3f));
            } else {
                utf8 += static_cast<char>(0xf0 | (cp >> 18));
                utf8 += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
                utf8 += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
                utf8 += static_cast<char>(0x80 | (cp & 0x3f));
            }
        }
        const auto encoded = utf8_to_utf16le(utf8, Terminator::required);
        REQUIRE(utf16le_to_utf8(encoded, Terminator::required, 1 << 20) == utf8);
    }
}

TEST_CASE("UTF-16LE decoding never accepts random garbage silently", "[util][utf16]") {
    // Fuzz: random bytes either decode to valid UTF-8 that re-encodes to the
    // same bytes, or throw Error. Nothing else (no crash, no other exception).
    std::mt19937 rng(99);
    for (int round = 0; round < 5000; ++round) {
        std::vector<std::uint8_t> data(rng() % 24);
        for (auto& b : data) b = static_cast<std::uint8_t>(rng() % 4 == 0 ? 0 : rng());
        try {
            const std::string text = utf16le_to_utf8(data, Terminator::required);
            REQUIRE(utf8_to_utf16le(text, Terminator::required) == data);
        } catch (const Error&) {}
    }
}

TEST_CASE("validate_utf8", "[util][utf16]") {
    CHECK_NOTHROW(validate_utf8("plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK_NOTHROW(validate_utf8(std::string_view("a\0b", 3)));
    CHECK_THROWS_WITH(validate_utf8("caf\xe9 ok"), "invalid UTF-8 at byte 3");
    CHECK_THROWS_WITH(validate_utf8("caf\xe9"), "truncated UTF-8 sequence at byte 3");
    CHECK_THROWS_WITH(validate_utf8("\xc0\xaf"), "overlong UTF-8 at byte 0");
    CHECK_THROWS_WITH(validate_utf8("ab\xf4\x90\x80\x80"), "invalid code point in UTF-8 at byte 2");
    CHECK_THROWS_WITH(validate_utf8("\xe2\x82"), "truncated UTF-8 sequence at byte 0");
}
