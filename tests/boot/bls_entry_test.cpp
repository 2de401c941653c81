#include "boot/bls_entry.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <sstream>

#include <random>

using namespace nixboot;

TEST_CASE("BLS entry: parse a NixOS entry", "[bls_entry]") {
    const std::string text =
        "title NixOS\n"
        "version Generation 5 NixOS 24.05.1, Built on 2024-05-01\n"
        "sort-key nixos\n"
        "linux /EFI/nixos/abc-linux-6.6-bzImage.efi\n"
        "initrd /EFI/nixos/ucode.efi\n"
        "initrd /EFI/nixos/def-initrd-linux-6.6-initrd.efi\n"
        "options init=/nix/store/xyz-nixos-system/init loglevel=4 nixboot.entry=nixos-generation-5\n"
        "machine-id 0123456789abcdef0123456789abcdef\n"
        "# a comment\n"
        "\n"
        "devicetree-overlay /dt/a.dtbo\n";
    const BlsEntry e = parse_bls_entry(text, "loader/entries/nixos-generation-5.conf");
    CHECK(e.title == "NixOS");
    CHECK(e.version == "Generation 5 NixOS 24.05.1, Built on 2024-05-01");
    CHECK(e.sort_key == "nixos");
    CHECK(e.kernel == "/EFI/nixos/abc-linux-6.6-bzImage.efi");
    CHECK(e.initrds == std::vector<std::string>{"/EFI/nixos/ucode.efi", "/EFI/nixos/def-initrd-linux-6.6-initrd.efi"});
    CHECK(e.options == "init=/nix/store/xyz-nixos-system/init loglevel=4 nixboot.entry=nixos-generation-5");
    CHECK(e.machine_id == "0123456789abcdef0123456789abcdef");
    CHECK_FALSE(e.devicetree);
    REQUIRE(e.other.size() == 1);
    CHECK(e.other[0] == std::pair<std::string, std::string>{"devicetree-overlay", "/dt/a.dtbo"});
    CHECK(parse_bls_entry(format_bls_entry(e), "x") == e);
    CHECK(format_bls_entry(e) ==
          "title NixOS\n"
          "version Generation 5 NixOS 24.05.1, Built on 2024-05-01\n"
          "sort-key nixos\n"
          "machine-id 0123456789abcdef0123456789abcdef\n"
          "linux /EFI/nixos/abc-linux-6.6-bzImage.efi\n"
          "initrd /EFI/nixos/ucode.efi\n"
          "initrd /EFI/nixos/def-initrd-linux-6.6-initrd.efi\n"
          "options init=/nix/store/xyz-nixos-system/init loglevel=4 nixboot.entry=nixos-generation-5\n"
          "devicetree-overlay /dt/a.dtbo\n");
}

TEST_CASE("BLS entry: tolerant of tabs, CRLF, repeated options", "[bls_entry]") {
    const BlsEntry e = parse_bls_entry("  title\t  Spaced  Title  \r\noptions a=1\noptions b=2\n", "f");
    CHECK(e.title == "Spaced  Title");
    CHECK(e.options == "a=1 b=2");
}

TEST_CASE("BLS entry: errors name file and line", "[bls_entry]") {
    CHECK_THROWS_WITH(parse_bls_entry("title A\nlinux\n", "loader/entries/x.conf"),
                      "loader/entries/x.conf:2: key 'linux' has no value");
    CHECK_THROWS_WITH(parse_bls_entry("title A\ntitle B\n", "loader/entries/x.conf"),
                      "loader/entries/x.conf:2: key 'title' appears again (first on line 1)");
    CHECK_THROWS_WITH(parse_bls_entry("title A\x01\n", "e.conf"), "e.conf:1: line contains a control character 0x01");
    CHECK_THROWS_WITH(parse_bls_entry(std::string("title A\0B\n", 10), "e.conf"),
                      "e.conf:1: line contains a control character 0x00");
    CHECK_THROWS_WITH(parse_bls_entry("ti=tle A\n", "e.conf"), "e.conf:1: 'ti=tle' is not a valid key");
    CHECK_THROWS_WITH(parse_bls_entry("title ok\ntitle2 caf\xc3\n", "e.conf"),
                      "e.conf:2: line is not valid UTF-8 (truncated UTF-8 sequence at byte 10)");
    CHECK_THROWS_WITH(parse_bls_entry(std::string(70000, '#'), "e.conf"), "e.conf: larger than 65536 bytes");
    CHECK_THROWS_AS(parse_bls_entry("linux\n", "e"), ParseError);
}

TEST_CASE("BLS entry: format refuses what would not read back", "[bls_entry]") {
    BlsEntry e;
    e.title = "two\nlines";
    CHECK_THROWS_WITH(format_bls_entry(e), "BLS entry: value of 'title' contains a control character 0x0a");
    e.title = " padded";
    CHECK_THROWS_WITH(format_bls_entry(e), "BLS entry: value of 'title' has leading or trailing whitespace");
    e.title = "";
    CHECK_THROWS_WITH(format_bls_entry(e), "BLS entry: value of 'title' is empty");
    e.title = "caf\xe9 au lait";  // Latin-1, not UTF-8
    CHECK_THROWS_WITH(format_bls_entry(e), "BLS entry: value of 'title' is not valid UTF-8 (invalid UTF-8 at byte 3)");
    e.title = "ok";
    e.other = {{"linux", "/x"}};
    CHECK_THROWS_WITH(format_bls_entry(e), "BLS entry: key 'linux' belongs in its own field, not in 'other'");
}

TEST_CASE("BLS entry: parse(format(x)) == x for generated entries", "[bls_entry]") {
    std::mt19937 rng(42);
    const std::vector<std::string> chars = {
        "a", "b", "c", "X", "Y", "Z", "0",  "1", "9",  " ",        "/",
        ".", "_", "-", "=", "+", ",", "\"", "'", "\t", "\xc3\xa9", "\xf0\x9f\x98\x80"};
    auto value = [&] {
        std::string v;
        const int len = 1 + static_cast<int>(rng() % 40);
        for (int i = 0; i < len; ++i) v += chars[rng() % chars.size()];
        // Trim as the format requires.
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.erase(v.begin());
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
        return v.empty() ? std::string("x") : v;
    };
    auto maybe = [&]() -> std::optional<std::string> {
        if (rng() % 3 == 0) return std::nullopt;
        return value();
    };
    for (int i = 0; i < 2000; ++i) {
        BlsEntry e;
        e.title = maybe();
        e.version = maybe();
        e.sort_key = maybe();
        e.machine_id = maybe();
        e.kernel = maybe();
        for (unsigned k = rng() % 3; k > 0; --k) e.initrds.push_back(value());
        e.options = maybe();
        e.devicetree = maybe();
        e.architecture = maybe();
        for (unsigned k = rng() % 3; k > 0; --k) e.other.emplace_back("x-key" + std::to_string(k), value());
        const std::string text = format_bls_entry(e);
        REQUIRE(parse_bls_entry(text, "gen") == e);
        REQUIRE(format_bls_entry(parse_bls_entry(text, "gen")) == text);
    }
}

TEST_CASE("BLS entry: random bytes either parse into a stable entry or fail with file:line", "[bls_entry]") {
    std::mt19937 rng(23);
    const std::vector<std::string> pieces = {"title", "linux", "initrd", "options", "sort-key", "x",  " ",       "\t",
                                             "\n",    "#",     "/a",     "=",       "\x01",     "\r", "version", "a b"};
    for (int i = 0; i < 5000; ++i) {
        std::string text;
        for (unsigned k = rng() % 20; k > 0; --k) text += pieces[rng() % pieces.size()];
        try {
            const BlsEntry e = parse_bls_entry(text, "f.conf");
            REQUIRE(parse_bls_entry(format_bls_entry(e), "f.conf") == e);
        } catch (const ParseError& e) {
            REQUIRE(std::string(e.what()).starts_with("f.conf:"));
        }
    }
}

// systemd's own parser is the reference: bootctl must read what we format
// the way parse_bls_entry does.
TEST_CASE("BLS entry: bootctl reads formatted entries exactly as parse_bls_entry does", "[bls_entry][root][interop]") {
    NIXBOOT_SKIP_UNLESS_ROOT("bootctl wants the ESP to be a mounted file system: a tmpfs");
    NIXBOOT_NEED_PROGRAM(bootctl, "bootctl");
    test::TempDir tmp;
    test::TmpfsMount esp(tmp / "esp", "4m");
    test::write_file(tmp / "esp/k", "k");
    std::mt19937 rng(61);
    const std::vector<std::string> chars = {"a",
                                            "b",
                                            "X",
                                            "0",
                                            "9",
                                            " ",
                                            "/",
                                            ".",
                                            "_",
                                            "-",
                                            "=",
                                            "+",
                                            ",",
                                            "\"",
                                            "'",
                                            "#",
                                            "\t",
                                            "\xc3\xa9",
                                            "\xe2\x82\xac",
                                            "\xf0\x9f\x98\x80"};
    auto value = [&] {
        std::string v = "v";
        for (unsigned i = rng() % 30; i > 0; --i) v += chars[rng() % chars.size()];
        while (v.back() == ' ' || v.back() == '\t') v.pop_back();
        return v;
    };
    // bootctl checks paths (no trailing '/', ...): keep file names plain.
    auto file_name = [&] {
        std::string v = "f";
        for (unsigned i = 1 + rng() % 12; i > 0; --i) v += "abcXYZ019._-+"[rng() % 13];
        return v;
    };
    std::map<std::string, BlsEntry> written;
    for (int i = 0; i < 40; ++i) {
        BlsEntry e;
        e.title = value();
        if (rng() % 2) e.version = value();
        if (rng() % 2) e.sort_key = "key" + std::to_string(rng() % 100);
        if (rng() % 2) e.machine_id = "0123456789abcdef0123456789abcdef";
        e.kernel = "/k";
        for (unsigned k = rng() % 3; k > 0; --k) e.initrds.push_back("/EFI/nixos/" + file_name());
        if (rng() % 2) e.options = value() + " " + value();
        const std::string file = "e" + std::to_string(i) + ".conf";
        const std::string text = format_bls_entry(e);
        test::write_file(tmp / "esp/loader/entries" / file, text);
        written[file] = parse_bls_entry(text, file);
    }
    const std::string cmd = "SYSTEMD_RELAX_ESP_CHECKS=1 " + bootctl +
                            " --no-pager --esp-path=" + (tmp / "esp").string() + " --json=short list 2>" +
                            (tmp / "bootctl.err").string();
    FILE* pipe = ::popen(cmd.c_str(), "r");
    REQUIRE(pipe);
    std::string output;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
    ::pclose(pipe);
    std::vector<nlohmann::json> listed;
    if (!output.empty() && output.front() == '[') {
        for (const auto& e : nlohmann::json::parse(output)) listed.push_back(e);
    } else {
        std::istringstream lines(output);
        for (std::string line; std::getline(lines, line);)
            if (!line.empty()) listed.push_back(nlohmann::json::parse(line));
    }
    INFO("bootctl said: " + test::read_file(tmp / "bootctl.err"));
    REQUIRE(listed.size() == written.size());
    auto optional_field = [](const nlohmann::json& j, const char* key) -> std::optional<std::string> {
        if (!j.contains(key)) return std::nullopt;
        return j.at(key).get<std::string>();
    };
    for (const auto& j : listed) {
        const std::string file = std::filesystem::path(j.at("path").get<std::string>()).filename().string();
        INFO(file);
        REQUIRE(written.count(file) == 1);
        const BlsEntry& e = written.at(file);
        CHECK(optional_field(j, "title") == e.title);
        CHECK(optional_field(j, "version") == e.version);
        CHECK(optional_field(j, "sortKey") == e.sort_key);
        CHECK(optional_field(j, "machineId") == e.machine_id);
        CHECK(optional_field(j, "linux") == e.kernel);
        CHECK(optional_field(j, "options") == e.options);
        std::vector<std::string> initrds;
        if (j.contains("initrd")) initrds = j.at("initrd").get<std::vector<std::string>>();
        CHECK(initrds == e.initrds);
    }
}
