#include "boot/counter.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <sstream>

#include <random>

using namespace nixboot;

namespace {
EntryName name(std::string stem, std::optional<Counter> counter, std::string suffix = ".conf") {
    return EntryName{std::move(stem), counter, std::move(suffix)};
}
}  // namespace

TEST_CASE("counter: parse names like bless-boot", "[counter]") {
    CHECK(parse_entry_name("nixos-generation-5.conf") == name("nixos-generation-5", std::nullopt));
    CHECK(parse_entry_name("nixos-generation-5+3.conf") == name("nixos-generation-5", Counter{3, 0}));
    CHECK(parse_entry_name("nixos-generation-5+2-1.conf") == name("nixos-generation-5", Counter{2, 1}));
    CHECK(parse_entry_name("nixos-generation-5+0-3.conf") == name("nixos-generation-5", Counter{0, 3}));
    CHECK(parse_entry_name("linux+1-0.efi") == name("linux", Counter{1, 0}, ".efi"));
    // The last '+' starts the counter.
    CHECK(parse_entry_name("a+b+1.conf") == name("a+b", Counter{1, 0}));
    CHECK(parse_entry_name("a.b.conf") == name("a.b", std::nullopt));
    CHECK(parse_entry_name("x+2147483647-2147483647.conf") == name("x", Counter{2147483647u, 2147483647u}));
}

TEST_CASE("counter: garbage is rejected with the reason", "[counter]") {
    CHECK_THROWS_WITH(parse_entry_name("a+x.conf"),
                      "entry file name 'a+x.conf': counter '+x' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+.conf"), "entry file name 'a+.conf': counter '+' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+1-.conf"),
                      "entry file name 'a+1-.conf': counter '+1-' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+1-2-3.conf"),
                      "entry file name 'a+1-2-3.conf': counter '+1-2-3' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+-1.conf"),
                      "entry file name 'a+-1.conf': counter '+-1' is not +LEFT or +LEFT-DONE");
    CHECK_THROWS_WITH(parse_entry_name("a+2147483648.conf"),
                      "entry file name 'a+2147483648.conf': counter '+2147483648' has a number larger than 2147483647");
    CHECK_THROWS_WITH(
        parse_entry_name("a+1-99999999999.conf"),
        "entry file name 'a+1-99999999999.conf': counter '+1-99999999999' has a number larger than 2147483647");
    CHECK_THROWS_WITH(parse_entry_name("+1.conf"), "entry file name '+1.conf': nothing before the counter");
    CHECK_THROWS_WITH(parse_entry_name(".conf"),
                      "entry file name '.conf': does not end in .conf or .efi with a name before it");
    CHECK_THROWS_WITH(parse_entry_name("a.txt"),
                      "entry file name 'a.txt': does not end in .conf or .efi with a name before it");
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
    CHECK(format_entry_name(make_bad(parse_entry_name("a.conf"))) == "a+0-0.conf");
    CHECK(format_entry_name(decrement(parse_entry_name("a.conf"))) == "a.conf");
    CHECK(format_entry_name(make_trial(parse_entry_name("a+0-3.conf"), 2)) == "a+2-0.conf");
    CHECK(counter_state(parse_entry_name("a.conf")) == CounterState::good);
    CHECK(std::string(to_string(CounterState::trying)) == "trying");
    // Idempotent: good of good, bad of bad.
    CHECK(make_good(make_good(n)) == make_good(n));
    CHECK(make_bad(make_bad(n)) == make_bad(n));
}

TEST_CASE("counter: names are written fixed-width (+LEFT-DONE), names without -DONE still read", "[counter]") {
    // A new trial keeps its length through systemd-boot's renames.
    EntryName n = make_trial(parse_entry_name("nixos-generation-5.conf"), 3);
    CHECK(format_entry_name(n) == "nixos-generation-5+3-0.conf");
    for (const char* next :
         {"nixos-generation-5+2-1.conf", "nixos-generation-5+1-2.conf", "nixos-generation-5+0-3.conf"}) {
        const std::size_t before = format_entry_name(n).size();
        n = decrement(n);
        CHECK(format_entry_name(n) == next);
        CHECK(format_entry_name(n).size() == before);
    }
    // Entries an earlier nixboot (or anyone) wrote without -DONE read as before.
    CHECK(parse_entry_name("a+1.conf") == parse_entry_name("a+1-0.conf"));
    CHECK(format_entry_name(parse_entry_name("a+1.conf")) == "a+1-0.conf");
    CHECK(format_entry_name(decrement(parse_entry_name("a+1.conf"))) == "a+0-1.conf");
    CHECK(format_entry_name(make_bad(parse_entry_name("a+2.conf"))) == "a+0-0.conf");
    CHECK(format_entry_name(make_good(parse_entry_name("a+2.conf"))) == "a.conf");
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
    const EntryScan scan = scan_entry_names(
        {"a.conf", "a+1.conf", "b+2-1.conf", "c+x.conf", "loader.conf.bak", ".hidden+1.conf", "d.efi", "e+0-3.conf"});
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

TEST_CASE("counter: the scan keeps the names systemd-boot reads: .conf in any case, no hidden or auto- names",
          "[counter]") {
    const EntryScan scan = scan_entry_names({"A+1.CONF", "b+2-1.Conf", "auto-windows.conf", "c.conf", ".d.conf"});
    REQUIRE(scan.entries.size() == 3);
    // The loader reads a counter only before ".conf" exactly: these have none.
    CHECK(scan.entries[0].file_name == "A+1.CONF");
    CHECK(scan.entries[0].name.stem == "A+1");
    CHECK(scan.entries[0].name.suffix == ".CONF");
    CHECK_FALSE(scan.entries[0].name.counter);
    CHECK(scan.entries[1].name.stem == "b+2-1");
    CHECK_FALSE(scan.entries[1].name.counter);
    CHECK(scan.entries[2].name == name("c", std::nullopt));
    CHECK(scan.rejected.empty());
}

TEST_CASE(
    "counter: of a torn rename's names, the one LoaderBootCountPath names, else the furthest along, holds the entry",
    "[counter]") {
    auto files = [](std::vector<std::string> names) {
        std::vector<EntryFile> out;
        for (auto& n : names) out.push_back(EntryFile{n, parse_entry_name(n)});
        return out;
    };
    // systemd-boot's own rename, +1 -> +0-1, in either directory order
    CHECK(torn_rename_survivor(files({"a+1.conf", "a+0-1.conf"})) == 1);
    CHECK(torn_rename_survivor(files({"a+0-1.conf", "a+1.conf"})) == 0);
    CHECK(torn_rename_survivor(files({"a+3-0.conf", "a+2-1.conf"})) == 1);
    // a blessing followed (bless-boot renamed the new name): the good name
    CHECK(torn_rename_survivor(files({"a+1.conf", "a.conf"})) == 1);
    // nixboot's mark-bad (+2 -> +0, nothing done): fewer left
    CHECK(torn_rename_survivor(files({"a+2.conf", "a+0.conf"})) == 1);
    // re-arming a bad entry (+0-1 -> +2) cut short reads as not armed
    CHECK(torn_rename_survivor(files({"a+0-1.conf", "a+2.conf"})) == 0);
    // the loader's word for this boot wins
    CHECK(torn_rename_survivor(files({"a+1.conf", "a+0-1.conf"}), "a+1.conf") == 0);
    CHECK(torn_rename_survivor(files({"a.conf", "a+0-1.conf"}), "a+0-1.conf") == 1);
    CHECK(torn_rename_survivor(files({"a+1.conf", "a+0-1.conf"}), "a+5.conf") == 1);
    CHECK(torn_rename_survivor(files({"a+1.conf"})) == 0);
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

// systemd's own parser is the reference: bootctl reads the same names.
TEST_CASE("counter: parse_entry_name agrees with bootctl on every name it accepts", "[counter][root][interop]") {
    NIXBOOT_SKIP_UNLESS_ROOT("bootctl wants the ESP to be a mounted file system: a tmpfs");
    NIXBOOT_NEED_PROGRAM(bootctl, "bootctl");
    test::TempDir tmp;
    test::TmpfsMount esp(tmp / "esp", "4m");
    std::vector<std::string> names = {"a+x.conf",
                                      "b+1-2-3.conf",
                                      "c+01.conf",
                                      "d+2-0.conf",
                                      "e+0.conf",
                                      "f+3-1.conf",
                                      "g+.conf",
                                      "h+4294967296.conf",
                                      "i++1.conf",
                                      "j.conf",
                                      "k+2147483647-7.conf",
                                      "k2+2147483648.conf",
                                      "k3+1-2147483648.conf",
                                      "l-x+2-5.conf",
                                      "m+1-.conf",
                                      "n+-1.conf"};
    std::mt19937 rng(51);
    const std::string alphabet = "ab+-0123456789";
    for (int i = 0; i < 60; ++i) {
        std::string stem = "r" + std::to_string(i);
        for (unsigned k = rng() % 6; k > 0; --k) stem += alphabet[rng() % alphabet.size()];
        names.push_back(stem + ".conf");
    }
    for (const auto& name : names) test::write_file(tmp / "esp/loader/entries" / name, "title T\nlinux /k\n");
    test::write_file(tmp / "esp/k", "k");
    const std::string cmd = "SYSTEMD_RELAX_ESP_CHECKS=1 " + bootctl +
                            " --no-pager --esp-path=" + (tmp / "esp").string() + " --json=short list 2>/dev/null";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    REQUIRE(pipe);
    std::string output;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
    ::pclose(pipe);
    // bootctl prints one JSON object per line (or a JSON array).
    std::map<std::string, nlohmann::json> by_file;
    auto take = [&](const nlohmann::json& e) {
        by_file[std::filesystem::path(e.at("path").get<std::string>()).filename().string()] = e;
    };
    if (!output.empty() && output.front() == '[') {
        for (const auto& e : nlohmann::json::parse(output)) take(e);
    } else {
        std::istringstream lines(output);
        for (std::string line; std::getline(lines, line);)
            if (!line.empty()) take(nlohmann::json::parse(line));
    }
    REQUIRE(by_file.size() >= names.size() - 5);  // bootctl drops only names it cannot parse at all
    unsigned agreed = 0, refused = 0;
    for (const auto& name : names) {
        const auto ours = try_parse_entry_name(name);
        const auto it = by_file.find(name);
        INFO(name);
        if (ours) {
            REQUIRE(it != by_file.end());
            const auto& e = it->second;
            CHECK(e.at("id").get<std::string>() == ours->stem + ours->suffix);
            if (ours->counter) {
                CHECK(e.at("triesLeft").get<unsigned>() == ours->counter->left);
                CHECK(e.value("triesDone", 0u) == ours->counter->done);
            } else {
                CHECK_FALSE(e.contains("triesLeft"));
            }
            ++agreed;
        } else {
            // We refuse it; systemd either drops it or reads it as a name without a counter.
            if (it != by_file.end()) {
                CHECK(it->second.at("id").get<std::string>() == name);
                CHECK_FALSE(it->second.contains("triesLeft"));
            }
            ++refused;
        }
    }
    CHECK(agreed > 20);
    CHECK(refused > 5);
}
