// Type #2 entries: what systemd-boot reads of a unified kernel image.
#include "boot/uki.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/uki_image.hpp"
#include "tests/cli/rig.hpp"

#include "tests/catch.hpp"

#include <fcntl.h>
#include <unistd.h>

using namespace nixboot;
using nixboot::test::make_uki;

namespace {

std::vector<UkiEntry> entries_of(const std::string& image) {
    test::TempDir tmp;
    auto path = tmp / "x.efi";
    test::write_file(path, image);
    int fd = ::open(path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    try {
        auto out = read_uki_entries(fd, "x.efi");
        ::close(fd);
        return out;
    } catch (...) {
        ::close(fd);
        throw;
    }
}

}  // namespace

TEST_CASE("os-release as systemd-boot reads it: quotes, comments, blanks") {
    auto kv =
        parse_os_release("# c\n  ID=fedora  \nPRETTY_NAME=\"Fedora Linux 41\"\n\nNAME='x'\nBAD\nVERSION_ID==41\r\n");
    CHECK(kv.at("ID") == "fedora");
    CHECK(kv.at("PRETTY_NAME") == "Fedora Linux 41");
    CHECK(kv.at("NAME") == "'x'");  // only double quotes are removed
    CHECK(kv.at("VERSION_ID") == "41");
    CHECK_FALSE(kv.count("BAD"));
}

TEST_CASE("a UKI's entry: name, version and sort key picked from its .osrel as bootspec does") {
    auto e = entries_of(make_uki({{".osrel", "ID=fedora\nIMAGE_ID=workstation\nVERSION_ID=41\nNAME=Fedora\n"},
                                  {".cmdline", "quiet"},
                                  {".linux", "kernel"}}));
    REQUIRE(e.size() == 1);
    CHECK(e[0].id_suffix.empty());
    CHECK(e[0].title == "workstation");  // PRETTY_NAME, else IMAGE_ID, else NAME, else ID
    CHECK(e[0].version == std::optional<std::string>("41"));
    CHECK(e[0].sort_key == std::optional<std::string>("workstation"));  // IMAGE_ID, else ID

    e = entries_of(make_uki({{".osrel", "ID=arch\nPRETTY_NAME=Arch Linux\nBUILD_ID=rolling\n"}}));
    REQUIRE(e.size() == 1);
    CHECK(e[0].title == "Arch Linux");
    CHECK(e[0].version == std::optional<std::string>("rolling"));
    CHECK(e[0].sort_key == std::optional<std::string>("arch"));

    // No name at all, or no .osrel: the loader adds nothing.
    CHECK(entries_of(make_uki({{".osrel", "VERSION_ID=1\n"}})).empty());
    CHECK(entries_of(make_uki({{".linux", "kernel"}})).empty());
}

TEST_CASE("a multi-profile UKI: one entry per profile, base sections shared, IDs with @") {
    auto e = entries_of(make_uki({{".osrel", "ID=nixos\nPRETTY_NAME=NixOS\n"},
                                  {".cmdline", "quiet"},
                                  {".profile", "ID=default\n"},
                                  {".profile", "ID=rescue\nTITLE=Rescue\n"},
                                  {".cmdline", "rescue"},
                                  {".profile", ""}}));
    REQUIRE(e.size() == 3);
    CHECK(e[0].id_suffix.empty());  // the first profile keeps the file's own ID
    CHECK(e[0].title == "NixOS");
    CHECK(e[1].id_suffix == "@rescue");
    CHECK(e[1].title == "NixOS (Rescue)");
    CHECK(e[2].id_suffix == "@2");
    CHECK(e[2].title == "NixOS (Profile #3)");

    // A profile's own .osrel wins over the base's.
    e = entries_of(make_uki({{".osrel", "ID=a\n"},
                             {".cmdline", "x"},
                             {".profile", ""},
                             {".profile", "ID=b\n"},
                             {".osrel", "ID=other\nIMAGE_ID=img\n"}}));
    REQUIRE(e.size() == 2);
    CHECK(e[0].sort_key == std::optional<std::string>("a"));
    CHECK(e[1].sort_key == std::optional<std::string>("img"));
    CHECK(e[1].id_suffix == "@b");
}

TEST_CASE("a UKI profile without a .cmdline ends the UKI's entries, as the loader returns there") {
    auto e = entries_of(make_uki({{".osrel", "ID=nixos\n"}, {".profile", "ID=one\n"}, {".profile", "ID=two\n"}}));
    REQUIRE(e.size() == 1);
    CHECK(e[0].title == "nixos");
}

TEST_CASE("a file the loader cannot read as a PE image is refused, naming it") {
    CHECK_THROWS_AS(entries_of("not a PE file at all, just text long enough to have a DOS header of 64 bytes"),
                    ParseError);
    CHECK_THROWS_WITH(entries_of("MZ"), "x.efi: not a PE image (no MZ header) (the loader skips it)");
    std::string cut = make_uki({{".osrel", "ID=x\n"}});
    cut.resize(0x150);  // inside the section table
    CHECK_THROWS_WITH(entries_of(cut), "x.efi: its section table is cut short (the loader skips it)");
}
