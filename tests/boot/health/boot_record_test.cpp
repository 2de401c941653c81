#include "boot/health/boot_record.hpp"

#include "boot/util/error.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::health;

TEST_CASE("boot record: format matches docs/contracts.md and parses back", "[health][record]") {
    BootRecord r;
    r.bootloader = Bootloader::systemd_boot;
    r.entry = "nixos-generation-5";
    r.file = "loader/entries/nixos-generation-5+0-1.conf";
    r.trial = TrialBoot::yes;
    r.tries_left = 0;
    r.consumed_by = ConsumedBy::bootloader;
    r.watchdog = WatchdogState::armed;
    std::string text = format_boot_record(r);
    CHECK(text ==
          "bootloader=systemd-boot\nentry=nixos-generation-5\nfile=loader/entries/nixos-generation-5+0-1.conf\n"
          "trial=1\ntries-left=0\nconsumed-by=bootloader\nwatchdog=armed\n");
    CHECK(parse_boot_record(text, "boot") == r);
    BootRecord g;
    g.bootloader = Bootloader::grub;
    g.entry = "nixos-generation-3";
    g.trial = TrialBoot::yes;
    g.tries_left = 2;
    g.consumed_by = ConsumedBy::stage1;
    g.watchdog = WatchdogState::unavailable;
    CHECK(parse_boot_record(format_boot_record(g), "boot") == g);
    CHECK(parse_boot_record(format_boot_record(BootRecord{}), "boot") == BootRecord{});
}

TEST_CASE("boot record: unknown keys and blank lines are ignored", "[health][record]") {
    auto r = parse_boot_record("future=1\n\nentry=nixos-generation-2\ntrial=0\n", "boot");
    CHECK(r.entry == "nixos-generation-2");
    CHECK_FALSE(r.bootloader);
}

TEST_CASE("boot record: bad lines are refused with file and line", "[health][record][bad-input]") {
    auto msg = [](std::string_view text) {
        try {
            parse_boot_record(text, "/run/nixboot/boot");
        } catch (const ParseError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(msg("entry=x\ngarbage\n") == "/run/nixboot/boot:2: line has no '='");
    CHECK(msg("trial=yes\n") == "/run/nixboot/boot:1: bad value 'yes' for 'trial'");
    CHECK(msg("bootloader=lilo\n") == "/run/nixboot/boot:1: bad value 'lilo' for 'bootloader'");
    CHECK(msg("entry=../x\n") == "/run/nixboot/boot:1: bad value '../x' for 'entry'");
    CHECK(msg("tries-left=-1\n") == "/run/nixboot/boot:1: bad value '-1' for 'tries-left'");
    CHECK(msg(std::string(5000, 'a')) == "/run/nixboot/boot: larger than 4096 bytes");
}
