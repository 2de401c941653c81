// The real `nixboot` binary with --bootloader grub: every verb over a
// temporary boot dir, profile and state, the GRUB keys from a config file.
#include "boot/bootspec.hpp"
#include "boot/grub/grub_test_support.hpp"

#include "tests/catch.hpp"

#include <map>

using nixboot::grub::test::run;
using nixboot::grub::test::RunResult;
using nixboot::grub::test::slurp;
using nixboot::grub::test::spit;
using nixboot::grub::test::TempDir;

namespace {

struct CliFixture {
    TempDir tmp;
    std::filesystem::path boot = tmp / "boot";
    std::filesystem::path profile = tmp / "profiles/system";
    std::filesystem::path conf = tmp / "nixboot.conf";

    explicit CliFixture(const std::string& probe = "fs=ext2") {
        std::filesystem::create_directories(boot);
        std::filesystem::create_directories(profile.parent_path());
        for (unsigned n = 1; n <= 3; ++n) add_generation(n);
        std::filesystem::create_symlink("system-2-link", profile);
        spit(tmp / "cmdline", "ro quiet\n");
        spit(conf, "grub-device-path = /\ngrub-probe-boot = " + probe +
                       "\ngrub-cmdline = " + (tmp / "cmdline").string() + "\ngrub-timeout = 3\n");
    }

    void add_generation(unsigned n) {
        const auto top = tmp / ("store/system-" + std::to_string(n));
        std::filesystem::create_directories(top);
        spit(tmp / "store/kernel", "kernel");
        spit(top / "initrd", "initrd " + std::to_string(n));
        spit(top / "init", "");
        nixboot::BootDocument d;
        d.boot.kernel = (tmp / "store/kernel").string();
        d.boot.initrd = (top / "initrd").string();
        d.boot.init = (top / "init").string();
        d.boot.toplevel = top.string();
        d.boot.system = "x86_64-linux";
        d.boot.label = "NixOS 24.05";
        d.boot.kernel_params = {"loglevel=4"};
        spit(top / "boot.json", nixboot::format_bootspec(d));
        std::filesystem::create_symlink(top, profile.parent_path() / ("system-" + std::to_string(n) + "-link"));
    }

    RunResult nixboot(std::vector<std::string> args) const {
        std::vector<std::string> argv{NIXBOOT_BIN,
                                      "--bootloader",
                                      "grub",
                                      "--config",
                                      conf.string(),
                                      "--esp",
                                      boot.string(),
                                      "--profile",
                                      profile.string(),
                                      "--state",
                                      (tmp / "state").string(),
                                      "--efivars",
                                      (tmp / "efivars").string()};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv);
    }
    std::string cfg() const { return slurp(boot / "grub/grub.cfg"); }
    std::string env() const { return run({"grub-editenv", (boot / "grub/grubenv").string(), "list"}).output; }
};

}  // namespace

TEST_CASE("grub cli: install, list, try, status, mark-good, rollback, mark-bad", "[grub][cli][real]") {
    NIXBOOT_NEED_PROGRAM(grub_script_check, "grub-script-check");
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    CliFixture f;
    auto r = f.nixboot({"install"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    REQUIRE(run({"grub-script-check", (f.boot / "grub/grub.cfg").string()}).status == 0);
    CHECK(f.cfg().find("set timeout=3\nset default='nixos-generation-2'\n") != std::string::npos);
    CHECK(f.env() == "nixboot_default=nixos-generation-2\n");

    r = f.nixboot({"list"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK(r.output.find("nixos-generation-3") != std::string::npos);

    r = f.nixboot({"try", "3"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(f.env() == "nixboot_default=nixos-generation-2\nnixboot_trial=nixos-generation-3\nnixboot_tries=1\n");
    REQUIRE(run({"grub-script-check", (f.boot / "grub/grub.cfg").string()}).status == 0);

    r = f.nixboot({"status"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK(r.output.find("nixos-generation-3") != std::string::npos);

    // GRUB boots the trial once (save_env: tries 1 -> 0) and it comes up.
    REQUIRE(run({"grub-editenv", (f.boot / "grub/grubenv").string(), "set", "nixboot_tries=0"}).status == 0);
    spit(f.tmp / "cmdline", "nixboot.entry=nixos-generation-3 nixboot.trial=nixos-generation-3 nixboot.tries=0\n");
    // Promotion, rollback and marking bad change grubenv in place; grub.cfg
    // is not rewritten (a power cut cannot leave GRUB without a menu).
    const std::string cfg_before = f.cfg();
    r = f.nixboot({"mark-good"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(f.env() == "nixboot_default=nixos-generation-3\n");
    CHECK(f.cfg() == cfg_before);

    r = f.nixboot({"rollback"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(f.env() == "nixboot_default=nixos-generation-2\n");

    r = f.nixboot({"mark-bad", "3"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(f.env() == "nixboot_default=nixos-generation-2\n");
    CHECK(f.cfg() == cfg_before);
    r = f.nixboot({"status"});
    CHECK(r.output.find("default:     nixos-generation-2 (good)") != std::string::npos);

    r = f.nixboot({"--json", "list"});
    CHECK(r.status == 0);
    CHECK(r.output.find("\"bad\"") != std::string::npos);
}

TEST_CASE("grub cli: LVM /boot without ESP refuses try unless --accept-risk", "[grub][cli][real]") {
    CliFixture f("fs=ext2 abstraction=lvm");
    REQUIRE(f.nixboot({"install"}).status == 0);
    const std::string env_before = f.env();
    auto r = f.nixboot({"try", "3"});
    INFO(r.output);
    CHECK(r.status == 1);
    CHECK(r.output.find("refusing to arm 'nixos-generation-3'") != std::string::npos);
    CHECK(r.output.find("a trial that panics or hangs before that is booted again and again") != std::string::npos);
    CHECK(r.output.find("--accept-risk") != std::string::npos);
    CHECK(f.env() == env_before);

    r = f.nixboot({"try", "3", "--accept-risk"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK(f.cfg().find("nixboot.consume=stage1") != std::string::npos);
}

TEST_CASE("grub cli: bad grub keys are usage errors and write nothing", "[grub][cli][real]") {
    CliFixture f;
    spit(f.conf, "grub-timeout = later\n");
    auto r = f.nixboot({"install"});
    CHECK(r.status == 2);
    CHECK(r.output.find("grub-timeout: 'later' is not a number of seconds from 0 to 3600") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(f.boot / "grub"));
}

TEST_CASE("grub cli: first install without nixboot.entry adopts the generation init= booted", "[grub][cli][real]") {
    // A stock grub.cfg booted generation 1; the profile already points at a
    // never-booted 2. Adopting 2 as good would make it the default (G1).
    CliFixture f;
    spit(f.tmp / "cmdline", "BOOT_IMAGE=/kernels/k init=" + (f.tmp / "store/system-1/init").string() + " ro quiet\n");
    auto r = f.nixboot({"install"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(f.cfg().find("set default='nixos-generation-1'\n") != std::string::npos);
    CHECK(slurp(f.tmp / "state/journal").find("first install: adopted the booted generation 1 as good") !=
          std::string::npos);
}

TEST_CASE("grub cli: first install with an init= of no generation adopts the profile's current", "[grub][cli][real]") {
    CliFixture f;
    spit(f.tmp / "cmdline", "init=/nix/store/elsewhere/init init=relative/init\n");
    auto r = f.nixboot({"install"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(f.cfg().find("set default='nixos-generation-2'\n") != std::string::npos);
}
