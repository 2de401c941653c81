#include "boot/health/detect.hpp"

#include "boot/util/error.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::health;

TEST_CASE("LoaderBootCountPath: accepted forms", "[health][detect]") {
    auto p = parse_boot_count_path("\\loader\\entries\\nixos-generation-5-specialisation-a+b+1-2.conf");
    CHECK(p.file == "loader/entries/nixos-generation-5-specialisation-a+b+1-2.conf");
    CHECK(p.name.stem == "nixos-generation-5-specialisation-a+b");
    CHECK(p.name.counter->left == 1);
    CHECK(p.name.counter->done == 2);
    CHECK(parse_boot_count_path("\\LOADER\\Entries\\x+0.conf").file == "loader/entries/x+0.conf");
}

TEST_CASE("LoaderBootCountPath: refused like systemd-bless-boot, with the reason", "[health][detect][bad-input]") {
    auto msg = [](std::string_view v) {
        try {
            parse_boot_count_path(v);
        } catch (const ParseError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    CHECK(msg("") == "LoaderBootCountPath '': empty");
    CHECK(msg("loader\\entries\\a+1.conf") == "LoaderBootCountPath 'loader\\entries\\a+1.conf': not an absolute path");
    CHECK(msg("\\loader\\entries\\..\\a+1.conf") ==
          "LoaderBootCountPath '\\loader\\entries\\..\\a+1.conf': not normalized ('..' component)");
    CHECK(msg("\\loader\\.\\entries\\a+1.conf").ends_with("not normalized ('.' component)"));
    CHECK(msg("\\loader\\entries\\a.conf") ==
          "LoaderBootCountPath '\\loader\\entries\\a.conf': names no counted file (no +LEFT in the name)");
    CHECK(msg("\\loader\\entries\\a+1.efi").ends_with("not a boot entry file name (NAME[+LEFT[-DONE]].conf)"));
    CHECK(msg("\\loader\\entries\\sub\\a+1.conf").ends_with("not a file directly under \\loader\\entries\\"));
    CHECK(msg("\\loader/entries\\a+1.conf").ends_with("contains '/'"));
    CHECK(msg("\\loader\\entries\\a\x01+1.conf").ends_with("control character in path"));
    CHECK(msg("\\" + std::string(600, 'a')).ends_with("longer than 512 bytes"));
}

TEST_CASE("detect: systemd-boot trial, good boot, bad variable", "[health][detect]") {
    KernelCmdline c;
    c.entry = "nixos-generation-5";
    LoaderVars v;
    v.loader_info = "systemd-boot 252.39";
    v.boot_count_path = "\\loader\\entries\\nixos-generation-5+2-1.conf";
    auto d = detect_boot(c, v);
    CHECK(d.problems.empty());
    CHECK(d.record.bootloader == Bootloader::systemd_boot);
    CHECK(d.record.trial == TrialBoot::yes);
    CHECK(d.record.tries_left == 2);
    CHECK(d.record.consumed_by == ConsumedBy::bootloader);

    c.entry = "nixos-generation-4";
    d = detect_boot(c, v);
    REQUIRE(d.problems.size() == 1);
    CHECK(d.problems[0] ==
          "nixboot.entry=nixos-generation-4 disagrees with LoaderBootCountPath entry "
          "nixos-generation-5; trusting the loader");
    CHECK(d.record.entry == "nixos-generation-5");

    v.boot_count_path.reset();
    d = detect_boot(c, v);
    CHECK(d.record.trial == TrialBoot::no);
    CHECK(d.record.entry == "nixos-generation-4");
    CHECK(d.record.bootloader == Bootloader::systemd_boot);

    v.boot_count_path = "\\loader\\entries\\nixos-generation-5.conf";
    d = detect_boot(c, v);
    CHECK(d.record.trial == TrialBoot::no);
    REQUIRE(d.problems.size() == 1);
    CHECK(d.problems[0].ends_with("names no counted file (no +LEFT in the name); not treated as a trial"));
}

TEST_CASE("detect: GRUB trials come from the command line only", "[health][detect]") {
    KernelCmdline c;
    c.entry = "nixos-generation-3";
    c.grub_trial = "nixos-generation-3";
    c.grub_tries_left = 1;
    auto d = detect_boot(c, {});
    CHECK(d.record.bootloader == Bootloader::grub);
    CHECK(d.record.trial == TrialBoot::yes);
    CHECK(d.record.tries_left == 1);
    CHECK(d.record.consumed_by == ConsumedBy::bootloader);
    c.consume = ConsumeBy::stage1;
    CHECK(detect_boot(c, {}).record.consumed_by == ConsumedBy::none);
    c.grub_trial = "nixos-generation-30";
    CHECK(detect_boot(c, {}).record.trial == TrialBoot::no);
    CHECK_FALSE(detect_boot(KernelCmdline{}, {}).record.bootloader);
}
