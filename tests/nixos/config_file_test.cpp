// The nixboot.conf files the NixOS module generates (nixos/config-file.nix,
// kept as golden files by tests/nixos/run) must be read by nixboot's own
// parser (boot/config.cpp) with every value the module meant.
#include "boot/config.hpp"
#include "boot/grub/backend.hpp"

#include "tests/catch.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

std::string golden_path(const std::string& name) {
    return std::string(NIXBOOT_SOURCE_DIR) + "/tests/nixos/golden/" + name + ".conf";
}

nixboot::Config read_golden(const std::string& name) {
    auto path = golden_path(name);
    auto file = nixboot::read_config_file(path, nixboot::Required::yes);
    REQUIRE(file.has_value());
    nixboot::Config config;
    nixboot::apply_config_file(config, *file, path);
    return config;
}

}  // namespace

TEST_CASE("nixos module: default nixboot.conf parses with the module's defaults", "[nixos]") {
    auto c = read_golden("defaults");
    REQUIRE(c.bootloader == nixboot::Bootloader::systemd_boot);
    CHECK(c.esp == "/boot");
    CHECK(c.profile == "/nix/var/nix/profiles/system");
    CHECK(c.efivars == "/sys/firmware/efi/efivars");
    CHECK(c.state == "/var/lib/nixboot");
    CHECK(c.tries == 1);
    CHECK(c.keep == 0);
    CHECK(c.checks_dir == "/etc/nixboot/checks.d");
    CHECK(c.check_timeout == 60);
    CHECK(c.verdict_timeout == 600);
    CHECK(c.on_failure == nixboot::OnFailure::reboot);
    CHECK(c.watchdog_device == "/dev/watchdog");
    CHECK(c.watchdog_timeout == 120);
    CHECK(c.confirm_timeout == 300);
    CHECK(c.checks.empty());
    CHECK(c.extra.empty());
}

TEST_CASE("nixos module: GRUB nixboot.conf carries tries and the configuration limit", "[nixos]") {
    auto c = read_golden("grub-efi");
    REQUIRE(c.bootloader == nixboot::Bootloader::grub);
    CHECK(c.esp == "/boot");  // GRUB's boot dir; the ESP is grub-efi-dir
    CHECK(c.tries == 3);
    CHECK(c.keep == 20);

    auto bios = read_golden("grub-bios");
    REQUIRE(bios.bootloader == nixboot::Bootloader::grub);
    CHECK(bios.tries == 1);
}

TEST_CASE("nixos module: the GRUB backend accepts the module's grub-* keys", "[nixos]") {
    auto efi = nixboot::grub::parse_grub_settings(read_golden("grub-efi").extra);
    CHECK(efi.target == "x86_64-efi");
    REQUIRE(efi.efi_dir.has_value());
    CHECK(*efi.efi_dir == "/boot/efi");
    CHECK(efi.removable);
    CHECK(efi.timeout == 5);
    CHECK(std::filesystem::path(efi.install_program).filename() == "grub-install");
    CHECK(efi.device.empty());

    auto bios = nixboot::grub::parse_grub_settings(read_golden("grub-bios").extra);
    CHECK(bios.target == "i386-pc");
    CHECK(bios.device == "/dev/disk/by-id/ata-TEST");
    CHECK(bios.timeout == 2);
    CHECK_FALSE(bios.efi_dir.has_value());
}

TEST_CASE("nixos module: checks, timeouts and on-failure reach nixboot", "[nixos]") {
    auto c = read_golden("checks");
    CHECK(c.esp == "/efi");
    CHECK(c.on_failure == nixboot::OnFailure::stay);
    CHECK(c.verdict_timeout == 900);
    CHECK(c.check_timeout == 45);
    CHECK(c.confirm_timeout == 120);
    CHECK(c.watchdog_timeout == 300);
    REQUIRE(c.checks.count("web") == 1);
    CHECK(c.checks.at("web").at("timeout") == "30");
    // A check without its own timeout gets no section.
    CHECK(c.checks.count("disk-space") == 0);
}

TEST_CASE("nixos module: watchdog.enable = false writes watchdog-timeout = 0", "[nixos]") {
    auto c = read_golden("no-watchdog");
    CHECK(c.watchdog_timeout == 0);
}

TEST_CASE("nixos module: every golden nixboot.conf is read without error", "[nixos]") {
    for (const char* name : {"defaults", "grub-efi", "grub-bios", "checks", "no-watchdog"}) {
        INFO(golden_path(name));
        CHECK_NOTHROW(read_golden(name));
    }
}
