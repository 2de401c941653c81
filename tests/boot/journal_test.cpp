#include "boot/journal.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include <random>

using namespace nixboot;

namespace {
JournalRecord sample() {
    JournalRecord r;
    r.time = 1796000441;  // 2026-11-29T...
    r.event = JournalEvent::arm;
    r.generation = 5;
    r.entry = "nixos-generation-5";
    r.file = "loader/entries/nixos-generation-5+1.conf";
    r.bootloader = "systemd-boot";
    r.boot_id = "0f3f8a0e-6f7c-4a39-9d5e-2b1c6e8f9a10";
    r.reason = "nixboot try 5 --tries 1";
    return r;
}
}  // namespace

TEST_CASE("journal: the line format of docs/contracts.md", "[journal]") {
    JournalRecord r = sample();
    r.time = 1795482041;
    CHECK(format_journal_line(r) ==
          R"({"time":"2026-11-24T01:00:41Z","event":"arm","generation":5,"entry":"nixos-generation-5",)"
          R"("file":"loader/entries/nixos-generation-5+1.conf","bootloader":"systemd-boot",)"
          R"("boot_id":"0f3f8a0e-6f7c-4a39-9d5e-2b1c6e8f9a10","reason":"nixboot try 5 --tries 1"})");
    CHECK(parse_journal_line(format_journal_line(r), "j") == r);
    r.generation.reset();
    r.event = JournalEvent::default_;
    CHECK(format_journal_line(r).find(R"("event":"default","generation":null)") != std::string::npos);
    CHECK(parse_journal_line(format_journal_line(r), "j") == r);
    for (const char* name : {"install", "adopt", "arm", "boot", "good", "bad", "promote", "default", "rollback",
                             "live-start", "live-confirm", "live-revert", "gc"}) {
        const auto event = parse_journal_event(name);
        REQUIRE(event);
        CHECK(std::string(to_string(*event)) == name);
    }
    CHECK_FALSE(parse_journal_event("reboot"));
}

TEST_CASE("journal: bad lines are refused with the reason", "[journal]") {
    CHECK_THROWS_WITH(parse_journal_line("{", "STATE/journal:3"),
                      nixboot::test::starts_with("STATE/journal:3: not JSON: parse error"));
    CHECK_THROWS_WITH(parse_journal_line(R"({"event":"arm"})", "j:1"), "j:1: missing \"time\"");
    CHECK_THROWS_WITH(parse_journal_line(R"({"time":"yesterday","event":"arm"})", "j:1"),
                      "j:1: \"time\" is not YYYY-MM-DDTHH:MM:SSZ: 'yesterday'");
    CHECK_THROWS_WITH(parse_journal_line(R"({"time":"2026-02-31T00:00:00Z","event":"arm"})", "j:1"),
                      "j:1: \"time\" is not YYYY-MM-DDTHH:MM:SSZ: '2026-02-31T00:00:00Z'");
    CHECK_THROWS_WITH(parse_journal_line(R"({"time":"2026-01-01T00:00:00Z","event":"explode"})", "j:1"),
                      "j:1: unknown event 'explode'");
    CHECK_THROWS_WITH(parse_journal_line(R"({"time":"2026-01-01T00:00:00Z","event":"arm","generation":-1})", "j:1"),
                      "j:1: \"generation\" is not a generation number");
    CHECK_THROWS_WITH(parse_journal_line(R"({"time":"2026-01-01T00:00:00Z","event":"arm","reason":7})", "j:1"),
                      "j:1: \"reason\" is not a string");
    // Extra keys from a newer nixboot are ignored.
    CHECK(parse_journal_line(R"({"time":"2026-01-01T00:00:00Z","event":"gc","future":1})", "j:1").event ==
          JournalEvent::gc);
}

TEST_CASE("journal: append, read back, survive a torn last line", "[journal]") {
    test::TempDir tmp;
    const auto state = tmp / "state";  // created by the first append
    CHECK(read_journal(state).records.empty());
    JournalRecord a = sample();
    JournalRecord b = sample();
    b.event = JournalEvent::good;
    b.reason = "checks passed: \"ssh\" \xe2\x9c\x93\nsecond line";
    append_journal(state, a);
    append_journal(state, b);
    JournalContents got = read_journal(state);
    CHECK(got.problems.empty());
    REQUIRE(got.records.size() == 2);
    CHECK(got.records[0] == a);
    CHECK(got.records[1] == b);
    // A crash in the middle of a line.
    {
        std::ofstream out(state / "journal", std::ios::app);
        out << R"({"time":"2026-01-01T00:00:00Z","ev)";
    }
    got = read_journal(state);
    CHECK(got.records.size() == 2);
    REQUIRE(got.problems.size() == 1);
    CHECK(got.problems[0].line == 3);
    CHECK(got.problems[0].message == (state / "journal").string() + ":3: torn last line (no newline), skipped");
    // The next append starts on a fresh line; the torn one stays reported, not fatal.
    append_journal(state, a);
    got = read_journal(state);
    CHECK(got.records.size() == 3);
    REQUIRE(got.problems.size() == 1);
    CHECK(got.problems[0].line == 3);
    CHECK_THAT(got.problems[0].message, nixboot::test::starts_with((state / "journal").string() + ":3: not JSON"));
}

TEST_CASE("journal: generated records round trip", "[journal]") {
    std::mt19937 rng(3);
    for (int i = 0; i < 1000; ++i) {
        JournalRecord r;
        r.time = static_cast<std::time_t>(rng() % 4000000000u);
        r.event = static_cast<JournalEvent>(rng() % 13);
        if (rng() % 2) r.generation = static_cast<unsigned>(rng());
        r.entry = "nixos-generation-" + std::to_string(rng() % 1000);
        r.reason = std::string(rng() % 50, static_cast<char>('a' + rng() % 26)) + "\t\"\\";
        REQUIRE(parse_journal_line(format_journal_line(r), "gen") == r);
    }
}

TEST_CASE("journal: boot id", "[journal]") {
    test::TempDir tmp;
    test::write_file(tmp / "boot_id", "0f3f8a0e-6f7c-4a39-9d5e-2b1c6e8f9a10\n");
    CHECK(current_boot_id(tmp / "boot_id") == "0f3f8a0e-6f7c-4a39-9d5e-2b1c6e8f9a10");
    test::write_file(tmp / "bad", "not-a-uuid\n");
    CHECK_THROWS_WITH(current_boot_id(tmp / "bad"),
                      "'" + (tmp / "bad").string() + "' does not hold a boot id: 'not-a-uuid'");
    CHECK_THROWS_WITH(current_boot_id(tmp / "missing"),
                      "reading the boot id from '" + (tmp / "missing").string() + "' failed");
    CHECK(current_boot_id().size() == 36);  // the real one
}

TEST_CASE("journal: mutated lines are refused with ParseError, never anything else", "[journal]") {
    std::mt19937 rng(41);
    const std::string line = format_journal_line(sample());
    const std::string alphabet = "{}[]\":,0123456789ae-TZ \\";
    for (int i = 0; i < 3000; ++i) {
        std::string text = line;
        for (unsigned k = 1 + rng() % 3; k > 0; --k) {
            const std::size_t at = rng() % text.size();
            if (rng() % 2)
                text[at] = alphabet[rng() % alphabet.size()];
            else
                text.erase(at, 1 + rng() % 6);
        }
        try {
            const JournalRecord r = parse_journal_line(text, "j:1");
            REQUIRE(parse_journal_line(format_journal_line(r), "j:1") == r);
        } catch (const ParseError& e) {
            REQUIRE(std::string(e.what()).starts_with("j:1: "));
        }
    }
}

// Found by fuzz/boot/journal_fuzz.cpp: nlohmann reports a number that
// overflows a double as out_of_range, not parse_error; it escaped
// parse_journal_line and read_journal, so one such line stopped `history`.
TEST_CASE("journal: a number too large for a double is a bad line, skipped", "[journal]") {
    CHECK_THROWS_WITH(parse_journal_line("1e400", "j:1"), "j:1: not JSON: number overflow parsing '1e400'");
    CHECK_THROWS_WITH(parse_journal_line(R"({"time":"2026-01-01T00:00:00Z","event":"arm","generation":1e400})", "j:1"),
                      "j:1: not JSON: number overflow parsing '1e400'");
    test::TempDir tmp;
    const auto state = tmp / "state";
    append_journal(state, sample());
    {
        std::ofstream out(state / "journal", std::ios::app);
        out << "110000001e022023\n";
    }
    append_journal(state, sample());
    const JournalContents got = read_journal(state);
    CHECK(got.records.size() == 2);
    REQUIRE(got.problems.size() == 1);
    CHECK(got.problems[0].line == 2);
    CHECK(got.problems[0].message ==
          (state / "journal").string() + ":2: not JSON: number overflow parsing '110000001e022023'");
}

TEST_CASE("journal: the rollback the journal ends on", "[journal]") {
    auto rec = [](JournalEvent event, unsigned gen, std::string reason = "") {
        JournalRecord r;
        r.time = 1764752400;  // 2025-12-03T09:00:00Z
        r.event = event;
        r.generation = gen;
        r.entry = "nixos-generation-" + std::to_string(gen);
        r.reason = std::move(reason);
        return r;
    };
    using E = JournalEvent;
    CHECK_FALSE(last_rollback({}));
    CHECK_FALSE(last_rollback({rec(E::adopt, 1), rec(E::install, 1)}));
    // a trial marked bad: the machine went back to its fallback
    auto bad = rec(E::bad, 3, "required check 'ssh' failed");
    CHECK(last_rollback({rec(E::adopt, 2), rec(E::arm, 3), bad, rec(E::install, 4)}) == bad);
    CHECK(describe_rollback(bad) ==
          "generation 3 was rolled back at 2025-12-03T09:00:00Z: required check 'ssh' failed");
    // a bad of an entry nobody armed is no rollback
    CHECK_FALSE(last_rollback({rec(E::adopt, 2), rec(E::bad, 1)}));
    // a new trial or a promotion ends it
    CHECK_FALSE(last_rollback({rec(E::arm, 3), bad, rec(E::arm, 4)}));
    CHECK_FALSE(last_rollback({rec(E::arm, 3), bad, rec(E::good, 1), rec(E::promote, 1)}));
    // by hand, and live
    auto back = rec(E::rollback, 1, "rolled back from generation 2");
    CHECK(last_rollback({rec(E::adopt, 2), back}) == back);
    CHECK(describe_rollback(back) ==
          "rolled back to generation 1 at 2025-12-03T09:00:00Z: rolled back from generation 2");
    auto revert = rec(E::live_revert, 5, "no confirm within 60 s");
    CHECK(last_rollback({rec(E::live_start, 5), revert}) == revert);
    CHECK_FALSE(last_rollback({rec(E::live_start, 5), rec(E::live_confirm, 5)}));
}
