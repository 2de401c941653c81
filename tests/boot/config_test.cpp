#include "boot/config.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

using namespace nixboot;

TEST_CASE("config file: keys, comments, quotes, check sections") {
    auto f = parse_config_file("# c\n; c\n\nbootloader = grub\nesp=/efi\ntries = \"3\"\n[check.ping]\ntimeout = 30\n",
                               "/etc/nixboot/nixboot.conf");
    REQUIRE(f.settings.size() == 3);
    CHECK(f.settings[0].key == "bootloader");
    CHECK(f.settings[1].value == "/efi");
    CHECK(f.settings[2].line == 6);
    CHECK(f.checks["ping"]["timeout"] == "30");
    Config c;
    apply_config_file(c, f, "/etc/nixboot/nixboot.conf");
    CHECK(c.bootloader == std::optional<Bootloader>(Bootloader::grub));
    CHECK(c.esp == "/efi");
    CHECK(c.tries == 3u);
    CHECK(c.checks["ping"]["timeout"] == "30");
}

TEST_CASE("config file: the command line wins") {
    auto f = parse_config_file("esp = /efi\nkeep = 4\n", "x.conf");
    Config c;
    apply_config_file(c, f, "x.conf", {"esp"});
    CHECK(c.esp == "/boot");
    CHECK(c.keep == 4u);
}

TEST_CASE("config file: errors name the file and line") {
    CHECK_THROWS_WITH(parse_config_file("esp = /boot\nfoo = 1\n", "/etc/nixboot/nixboot.conf"),
                      "/etc/nixboot/nixboot.conf:2: unknown key 'foo'");
    CHECK_THROWS_WITH(parse_config_file("esp /boot\n", "a.conf"), "a.conf:1: expected 'key = value', got 'esp /boot'");
    CHECK_THROWS_WITH(parse_config_file("[grub]\n", "a.conf"), "a.conf:1: unknown section '[grub]'");
    CHECK_THROWS_WITH(parse_config_file("[check.x\n", "a.conf"), "a.conf:1: section header without ']'");
    CHECK_THROWS_WITH(parse_config_file(std::string(70000, '#'), "a.conf"), "a.conf: file is larger than 64 KiB");
    Config c;
    auto f = parse_config_file("tries = many\n", "a.conf");
    CHECK_THROWS_WITH(apply_config_file(c, f, "a.conf"), "a.conf:1: tries: 'many' is not a number");
    CHECK_THROWS_WITH(apply_config_value(c, "tries", "0", "--tries"), "--tries: tries: must be at least 1");
    CHECK_THROWS_WITH(apply_config_value(c, "bootloader", "lilo", "--bootloader"),
                      "--bootloader: bootloader: 'lilo' is not systemd-boot or grub");
    CHECK_THROWS_WITH(apply_config_value(c, "on-failure", "panic", "x:3"),
                      "x:3: on-failure: 'panic' is not reboot or stay");
    CHECK_THROWS_AS(apply_config_value(c, "tries", "0", "--tries"), UsageError);
}

TEST_CASE("config file: grub-* keys pass through to the backend") {
    Config c;
    apply_config_file(c, parse_config_file("grub-env = /boot/grub/grubenv\n", "a"), "a");
    CHECK(c.extra["grub-env"] == "/boot/grub/grubenv");
}

TEST_CASE("config file: missing default file is fine, a missing named file is not") {
    test::TempDir t;
    CHECK_FALSE(read_config_file(t / "none.conf", Required::no));
    CHECK_THROWS_WITH(read_config_file(t / "none.conf", Required::yes),
                      "config file '" + (t / "none.conf").string() + "': No such file or directory");
    test::write_file(t / "a.conf", "keep = 2\n");
    auto f = read_config_file(t / "a.conf", Required::yes);
    REQUIRE(f);
    CHECK(f->settings.at(0).value == "2");
}
