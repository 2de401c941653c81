#include "boot/loader_conf.hpp"

#include "boot/util/error.hpp"

#include "tests/catch.hpp"

#include <random>

using namespace nixboot;

TEST_CASE("loader.conf: keeps what it does not manage", "[loader_conf]") {
    const std::string text =
        "# written by hand\n"
        "timeout 3\n"
        "console-mode keep\n"
        "\n"
        "editor   no\n"
        "default nixos-generation-3.conf\n"
        "some-future-key with  spaces \n";
    LoaderConf conf = LoaderConf::parse(text, "loader/loader.conf");
    CHECK(conf.format() == text);
    CHECK(conf.get("default") == "nixos-generation-3.conf");
    CHECK(conf.get("editor") == "no");
    CHECK(conf.get("some-future-key") == "with  spaces");
    CHECK_FALSE(conf.get("auto-entries"));
    conf.set("default", "nixos-generation-4.conf");
    conf.set("timeout", "3");  // unchanged value keeps the original line
    CHECK(conf.format() ==
          "# written by hand\n"
          "timeout 3\n"
          "console-mode keep\n"
          "\n"
          "editor   no\n"
          "default nixos-generation-4.conf\n"
          "some-future-key with  spaces \n");
    conf.set("auto-firmware", "no");
    CHECK(conf.format().ends_with("some-future-key with  spaces \nauto-firmware no\n"));
    CHECK(conf.unset("timeout"));
    CHECK_FALSE(conf.unset("timeout"));
    CHECK(conf.format().find("timeout") == std::string::npos);
    CHECK(LoaderConf::parse(conf.format(), "x") == conf);
}

TEST_CASE("loader.conf: duplicates: last wins for get, set collapses", "[loader_conf]") {
    LoaderConf conf = LoaderConf::parse("default a\n#c\ndefault b\n", "f");
    CHECK(conf.get("default") == "b");
    conf.set("default", "c");
    CHECK(conf.format() == "default c\n#c\n");
}

TEST_CASE("loader.conf: empty, missing newline, CRLF", "[loader_conf]") {
    CHECK(LoaderConf::parse("", "f").format().empty());
    LoaderConf conf = LoaderConf::parse("timeout 5", "f");
    CHECK(conf.format() == "timeout 5\n");
    CHECK(LoaderConf::parse("timeout 5\r\n", "f").get("timeout") == "5");
    LoaderConf fresh;
    fresh.set("default", "nixos-generation-1.conf");
    CHECK(fresh.format() == "default nixos-generation-1.conf\n");
}

TEST_CASE("loader.conf: errors", "[loader_conf]") {
    CHECK_THROWS_WITH(LoaderConf::parse(std::string("timeout 1\nde\0fault x\n", 21), "loader/loader.conf"),
                      "loader/loader.conf:2: line contains a NUL byte");
    CHECK_THROWS_WITH(LoaderConf::parse(std::string(70000, '#'), "loader/loader.conf"),
                      "loader/loader.conf: larger than 65536 bytes");
    LoaderConf conf;
    CHECK_THROWS_WITH(conf.set("default", "a\nb"), "loader.conf: value for 'default' contains a line break or NUL");
    CHECK_THROWS_WITH(conf.set("bad key", "a"), "loader.conf: 'bad key' is not a valid key");
    CHECK_THROWS_WITH(conf.set("default", " a"), "loader.conf: value for 'default' has leading or trailing whitespace");
    CHECK_THROWS_AS(conf.set("", "a"), UsageError);
    CHECK_THROWS_WITH(conf.set("default", "caf\xe9 x"),
                      "loader.conf: value for 'default' is not valid UTF-8 (invalid UTF-8 at byte 3)");
    CHECK(conf.format().empty());  // nothing changed by the refused calls
}

TEST_CASE("loader.conf: parse(format(x)) == x and format(parse(t)) == t for generated files", "[loader_conf]") {
    std::mt19937 rng(5);
    const std::vector<std::string> pieces = {"# comment",
                                             "",
                                             "  ",
                                             "timeout 3",
                                             "default nixos-generation-1.conf",
                                             "editor no",
                                             "\tconsole-mode  max",
                                             "x-unknown a b c",
                                             "default other.conf"};
    for (int i = 0; i < 1000; ++i) {
        std::string text;
        for (unsigned k = rng() % 8; k > 0; --k) text += pieces[rng() % pieces.size()] + "\n";
        const LoaderConf conf = LoaderConf::parse(text, "gen");
        REQUIRE(conf.format() == text);
        REQUIRE(LoaderConf::parse(conf.format(), "gen") == conf);
        LoaderConf changed = conf;
        changed.set("default", "nixos-generation-9.conf");
        REQUIRE(LoaderConf::parse(changed.format(), "gen").get("default") == "nixos-generation-9.conf");
    }
}

TEST_CASE("loader.conf: any text without NUL formats back byte for byte", "[loader_conf]") {
    std::mt19937 rng(31);
    for (int i = 0; i < 5000; ++i) {
        std::string text;
        for (unsigned k = rng() % 60; k > 0; --k) {
            char c = static_cast<char>(rng() % 256);
            if (c == '\0') c = '\n';
            text += c;
        }
        if (!text.empty() && text.back() != '\n') text += '\n';  // format always ends lines
        const LoaderConf conf = LoaderConf::parse(text, "gen");
        REQUIRE(conf.format() == text);
    }
}
