#include "boot/counter.hpp"

#include "boot/util/error.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace nixboot;

namespace {
EntryName name(std::string stem, std::optional<Counter> counter, std::string suffix = ".conf") {
    return EntryName{std::move(stem), counter, std::move(suffix)};
}
} // namespace

TEST_CASE("counter: parse names like bless-boot", "[counter]") {
    CHECK(parse_entry_name("nixos-generation-5.conf") == name("nixos-generation-5", std::nullopt));
    CHECK(parse_entry_name("nixos-generation-5+3.conf") == name("nixos-generation-5", Counter{3, 0}));
    CHECK(parse_entry_name("nixos-generation-5+2-1.conf") == name("nixos-generation-5", Counter{2, 1}));
    CHECK(parse_entry_name("nixos-generation-5+0-3.conf") == name("nixos-generation-5", Counter{0, 3}));
    CHECK(parse_entry_name("linux+1-0.efi") == name("linux", Counter{1, 0}, ".efi"));
    // The last '+' starts the counter.
    CHECK(parse_entry_name("a+b+1.conf") == name("a+b", Counter{1, 0}));
    CHECK(parse_entry_name("a.b.conf") == name("a.b", std::nullopt));
    CHECK(parse_entry_name("x+4294967295-4294967295.conf") == name("x", Counter{4294967295u, 4294967295u}));
}

TEST_CASE("counter: garbage is rejected with the reason", "[counter]") {
    CHECK_THROWS_WITH(parse_entry_name("a+x.conf"), "entry file name 'a+x.conf': counter '+x' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+.conf"), "entry file name 'a+.conf': counter '+' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+1-.conf"), "entry file name 'a+1-.conf': counter '+1-' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+1-2-3.conf"),
                      "entry file name 'a+1-2-3.conf': counter '+1-2-3' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+-1.conf"), "entry file name 'a+-1.conf': counter '+-1' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+4294967296.conf"),
                      "entry file name 'a+4294967296.conf': counter '+4294967296' has a number larger than 4294967295");
    CHECK_THROWS_WITH(parse_entry_name("+1.conf"), "entry file name '+1.conf': nothing before the counter");
    CHECK_THROWS_WITH(parse_entry_name(".conf"),
                      "entry file name '.conf': does not end in .conf or .efi with a name before it");
    CHECK_THROWS_WITH(parse_entry_name("a.txt"), "entry file name 'a.txt': does not end in .conf or .efi with a name before it");
    CHECK_THROWS_WITH(parse_entry_name("dir/a.conf"), "entry file name 'dir/a.conf': contains '/'");
    CHECK_THROWS_AS(parse_entry_name("a+x.conf"), ParseError);
    CHECK_FALSE(try_parse_entry_name("a+x.conf"));
    CHECK(try_parse_entry_name("a+1.conf"));
}

TEST_CASE("counter: states and transitions as systemd does them", "[counter]") {
    // The reference sequence with 3 tries.
    EntryName n = parse_entry_name("a+3.conf");
    CHECK(counter_state(n) == CounterState::trying);
    n = decrement(n);
    CHECK(format_entry_name(n) == "a+2-1.conf");
    n = decrement(n);
    CHECK(format_entry_name(n) == "a+1-2.conf");
    n = decrement(n);
    CHECK(format_entry_name(n) == "a+0-3.conf");
    CHECK(counter_state(n) == CounterState::bad);
    // Booting a bad entry anyway keeps counting.
    CHECK(format_entry_name(decrement(n)) == "a+0-4.conf");
    CHECK(format_entry_name(make_good(parse_entry_name("a+1-2.conf"))) == "a.conf");
    CHECK(format_entry_name(make_bad(parse_entry_name("a+1-2.conf"))) == "a+0-2.conf");
    CHECK(format_entry_name(make_bad(parse_entry_name("a.conf"))) == "a+0.conf");
    CHECK(format_entry_name(decrement(parse_entry_name("a.conf"))) == "a.conf");
    CHECK(format_entry_name(make_trial(parse_entry_name("a+0-3.conf"), 2)) == "a+2.conf");
    CHECK(counter_state(parse_entry_name("a.conf")) == CounterState::good);
    CHECK(std::string(to_string(CounterState::trying)) == "trying");
    // Idempotent: good of good, bad of bad.
    CHECK(make_good(make_good(n)) == make_good(n));
    CHECK(make_bad(make_bad(n)) == make_bad(n));
}

TEST_CASE("counter: parse(format(x)) == x for generated names", "[counter]") {
    std::mt19937 rng(7);
    const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-._+";
    for (int i = 0; i < 5000; ++i) {
        std::string stem;
        const int len = 1 + static_cast<int>(rng() % 30);
        for (int k = 0; k < len; ++k) stem += alphabet[rng() % alphabet.size()];
        std::optional<Counter> counter;
        if (rng() % 3) counter = Counter{static_cast<unsigned>(rng() % 1000), static_cast<unsigned>(rng() % 5)};
        const EntryName original{stem, counter, rng() % 2 ? ".conf" : ".efi"};
        const std::string formatted = format_entry_name(original);
        // A stem that itself ends in a counter-like "+N" is ambiguous without a
        // counter of its own: systemd reads it as a counter too.
        const auto parsed = try_parse_entry_name(formatted);
        if (!counter && stem.find('+') != std::string::npos) continue;
        if (stem.find('+') != std::string::npos && !parsed) continue;
        REQUIRE(parsed);
        CHECK(*parsed == original);
    }
}

TEST_CASE("counter: scanning a directory reports duplicates and garbage", "[counter]") {
    const EntryScan scan = scan_entry_names({"a.conf", "a+1.conf", "b+2-1.conf", "c+x.conf", "loader.conf.bak",
                                             ".hidden+1.conf", "d.efi", "e+0-3.conf"});
    REQUIRE(scan.entries.size() == 4);
    CHECK(scan.entries[0].file_name == "a.conf");
    CHECK(scan.entries[1].name == name("a", Counter{1, 0}));
    CHECK(scan.entries[2].name == name("b", Counter{2, 1}));
    CHECK(scan.entries[3].name == name("e", Counter{0, 3}));
    REQUIRE(scan.rejected.size() == 1);
    CHECK(scan.rejected[0].file_name == "c+x.conf");
    CHECK(scan.rejected[0].reason == "entry file name 'c+x.conf': counter '+x' is not +LEFT or +LEFT-DONE");
    REQUIRE(scan.duplicates.size() == 1);
    CHECK(scan.duplicates[0] == std::vector<std::string>{"a+1.conf", "a.conf"});
    const EntryScan efi = scan_entry_names({"d.efi", "d+1.efi"}, ".efi");
    CHECK(efi.entries.size() == 2);
    CHECK(efi.duplicates.size() == 1);
}

TEST_CASE("counter: random names either parse and format back or are refused", "[counter]") {
    std::mt19937 rng(17);
    const std::string alphabet = "ab+-0123456789.confi/\x01 ";
    for (int i = 0; i < 20000; ++i) {
        std::string text;
        for (unsigned k = rng() % 16; k > 0; --k) text += alphabet[rng() % alphabet.size()];
        if (rng() % 2) text += rng() % 2 ? ".conf" : ".efi";
        try {
            const EntryName parsed = parse_entry_name(text);
            // Formatting normalizes "+N-0" to "+N" and leading zeros; the value survives.
            REQUIRE(parse_entry_name(format_entry_name(parsed)) == parsed);
            REQUIRE_FALSE(parsed.stem.empty());
        } catch (const ParseError& e) {
            REQUIRE(std::string(e.what()).starts_with("entry file name '"));
        }
    }
}
