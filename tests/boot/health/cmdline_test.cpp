#include "boot/health/cmdline.hpp"

#include "tests/catch.hpp"

using namespace nixboot::health;

TEST_CASE("cmdline: nixboot parameters among others, last one wins", "[health][cmdline]") {
    auto c = parse_kernel_cmdline(
        "BOOT_IMAGE=/k init=/nix/store/x/init nixboot.entry=nixos-generation-2 quiet "
        "nixboot.watchdog=60 nixboot.entry=nixos-generation-5\n");
    CHECK(c.entry == "nixos-generation-5");
    CHECK(c.watchdog_seconds == 60u);
    CHECK_FALSE(c.grub_trial);
    CHECK(c.consume == ConsumeBy::bootloader);
    CHECK(c.problems.empty());
}

TEST_CASE("cmdline: quotes group words and are dropped", "[health][cmdline]") {
    auto c = parse_kernel_cmdline("a=\"x y\" \"nixboot.entry=nixos-generation-3\"\tnixboot.tries=2");
    CHECK(c.entry == "nixos-generation-3");
    CHECK(c.grub_tries_left == 2u);
}

TEST_CASE("cmdline: GRUB trial parameters", "[health][cmdline]") {
    auto c = parse_kernel_cmdline(
        "nixboot.entry=nixos-generation-3-specialisation-fast "
        "nixboot.trial=nixos-generation-3-specialisation-fast nixboot.tries=0 nixboot.consume=stage1");
    CHECK(c.grub_trial == "nixos-generation-3-specialisation-fast");
    CHECK(c.grub_tries_left == 0u);
    CHECK(c.consume == ConsumeBy::stage1);
}

TEST_CASE("cmdline: garbage becomes one problem per bad parameter, never a value", "[health][cmdline][bad-input]") {
    auto c = parse_kernel_cmdline(
        "nixboot.watchdog=-1 nixboot.watchdog=99999999999 nixboot.watchdog= nixboot.entry "
        "nixboot.entry=a/b nixboot.entry=.hidden nixboot.tries=x nixboot.consume=maybe "
        "nixboot.x=1 nixboot.entry=\x01 nixbootentry=y");
    CHECK_FALSE(c.entry);
    CHECK_FALSE(c.watchdog_seconds);
    CHECK_FALSE(c.grub_tries_left);
    REQUIRE(c.problems.size() == 10);
    CHECK(c.problems[0] == "ignoring kernel parameter 'nixboot.watchdog=-1': not a number of seconds from 0 to 86400");
    CHECK(c.problems[3] == "ignoring kernel parameter 'nixboot.entry': not an entry ID (1-200 of A-Z a-z 0-9 . _ -)");
    CHECK(c.problems[7] == "ignoring kernel parameter 'nixboot.consume=maybe': expected 'stage1' or 'bootloader'");
    CHECK(c.problems[8] == "ignoring kernel parameter 'nixboot.x=1': unknown nixboot parameter");
    CHECK(c.problems[9] ==
          "ignoring kernel parameter 'nixboot.entry=\\x01': not an entry ID (1-200 of A-Z a-z 0-9 . _ -)");
}

TEST_CASE("cmdline: bounded", "[health][cmdline][bad-input]") {
    std::string huge(max_cmdline_bytes + 10, 'a');
    huge += " nixboot.entry=nixos-generation-9";
    auto c = parse_kernel_cmdline(huge);
    CHECK_FALSE(c.entry);  // past the bound: not read
    REQUIRE(c.problems.size() == 1);
    CHECK(c.problems[0] ==
          "kernel command line is " + std::to_string(huge.size()) + " bytes, only the first 16384 are read");
    std::string long_id = "nixboot.entry=" + std::string(max_entry_id_bytes + 1, 'a');
    CHECK(parse_kernel_cmdline(long_id).problems.size() == 1);
    std::string long_value = "nixboot.entry=" + std::string(500, '\xff');
    auto p = parse_kernel_cmdline(long_value).problems;
    REQUIRE(p.size() == 1);
    CHECK(p[0].size() < 400);  // the echoed value is cut
}

TEST_CASE("cmdline: format and parse are inverse", "[health][cmdline]") {
    KernelCmdline c;
    c.entry = "nixos-generation-7";
    c.watchdog_seconds = 0;
    c.grub_trial = "nixos-generation-7";
    c.grub_tries_left = 3;
    c.consume = ConsumeBy::stage1;
    std::string text = format_kernel_cmdline(c);
    CHECK(text ==
          "nixboot.entry=nixos-generation-7 nixboot.watchdog=0 nixboot.trial=nixos-generation-7 "
          "nixboot.tries=3 nixboot.consume=stage1");
    CHECK(parse_kernel_cmdline(text) == c);
    CHECK(parse_kernel_cmdline(format_kernel_cmdline(KernelCmdline{})) == KernelCmdline{});
}

TEST_CASE("cmdline: parsing random bytes never throws", "[health][cmdline][fuzz]") {
    std::uint32_t seed = 12345;
    auto next = [&] { return seed = seed * 1664525u + 1013904223u; };
    const char* pieces[] = {"nixboot.", "entry=", "watchdog=", "trial=", "tries=", "\"", " ",
                            "=",        "\n",     "9",         "x",      "\xff",   "\0"};
    for (int i = 0; i < 2000; ++i) {
        std::string s;
        int n = static_cast<int>(next() % 20);
        for (int j = 0; j < n; ++j) s += pieces[next() % 13];
        auto c = parse_kernel_cmdline(s);
        if (c.entry) CHECK(valid_entry_id(*c.entry));
        if (c.watchdog_seconds) CHECK(*c.watchdog_seconds <= max_watchdog_seconds);
    }
}
