#include "boot/grub/probe.hpp"

#include "boot/grub/grub_test_support.hpp"
#include "boot/util/error.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::grub;

namespace {
FsInfo fs(std::string name, std::vector<std::string> abs = {}, std::string uuid = "1234-ABCD") {
    FsInfo i;
    i.fs = std::move(name);
    i.abstractions = std::move(abs);
    i.fs_uuid = std::move(uuid);
    return i;
}
}  // namespace

TEST_CASE("probe: only FAT and ext2/3/4 on a plain partition are writable by GRUB", "[grub][probe]") {
    CHECK(grub_can_write(fs("fat")).writability == Writability::writable);
    CHECK(grub_can_write(fs("ext2")).writability == Writability::writable);
    for (const char* name : {"btrfs", "zfs", "xfs", "f2fs", "ntfs"}) {
        INFO(name);
        CHECK(grub_can_write(fs(name)).writability == Writability::not_writable);
    }
    auto lvm = grub_can_write(fs("ext2", {"lvm"}));
    CHECK(lvm.writability == Writability::not_writable);
    CHECK(lvm.reason == "ext2 on lvm: GRUB cannot write through lvm");
    CHECK(grub_can_write(fs("ext2", {"cryptodisk", "luks2"})).reason ==
          "ext2 on cryptodisk,luks2: GRUB cannot write through cryptodisk,luks2");
    CHECK(grub_can_write(fs("fat", {"mdraid1x"})).writability == Writability::not_writable);
    CHECK(grub_can_write(fs("btrfs")).reason == "btrfs: GRUB cannot write its env block on btrfs");
    FsInfo failed;
    failed.error = "grub-probe: error: disk not found";
    CHECK(grub_can_write(failed).writability == Writability::unknown);
}

TEST_CASE("probe: env placement for every layout", "[grub][probe]") {
    SECTION("plain /boot: beside grub.cfg, GRUB counts") {
        auto p = place_env(fs("ext2"), std::nullopt);
        CHECK(p.where == EnvPlacement::Where::boot);
        CHECK(p.writer == EnvWriter::grub);
    }
    SECTION("/boot on btrfs with a FAT ESP: on the ESP, GRUB counts") {
        auto p = place_env(fs("btrfs"), fs("fat", {}, "ABCD-1234"));
        CHECK(p.where == EnvPlacement::Where::esp);
        CHECK(p.writer == EnvWriter::grub);
        CHECK(p.esp_uuid == "ABCD-1234");
    }
    SECTION("/boot on LVM, ESP on mdraid: stage 1 counts, the window is named") {
        auto p = place_env(fs("ext2", {"lvm"}), fs("fat", {"mdraid1x"}));
        CHECK(p.where == EnvPlacement::Where::boot);
        CHECK(p.writer == EnvWriter::stage1);
        CHECK(p.reason ==
              "/boot: ext2 on lvm: GRUB cannot write through lvm; ESP: fat on mdraid1x: GRUB cannot "
              "write through mdraid1x. nixboot-stage1 consumes each try once the root filesystem is "
              "mounted, so a trial that panics or hangs before that is booted again and again");
    }
    SECTION("/boot on zfs, BIOS (no ESP): stage 1 counts") {
        auto p = place_env(fs("zfs"), std::nullopt);
        CHECK(p.writer == EnvWriter::stage1);
        CHECK(p.reason.starts_with("/boot: zfs: GRUB cannot write its env block on zfs; no ESP"));
    }
    SECTION("grub-probe failed: treated as not writable") {
        FsInfo failed;
        failed.error = "grub-probe: error: disk `hostdisk//dev/vda' not found.";
        auto p = place_env(failed, std::nullopt);
        CHECK(p.writer == EnvWriter::stage1);
        CHECK(p.reason.starts_with("/boot: cannot tell: grub-probe: error"));
    }
    SECTION("ESP without UUID cannot be found by GRUB") {
        auto p = place_env(fs("btrfs"), fs("fat", {}, ""));
        CHECK(p.writer == EnvWriter::stage1);
    }
}

TEST_CASE("probe: injected results parse, bad ones are refused", "[grub][probe]") {
    CHECK(parse_probe_override("fs=btrfs", "x") == fs("btrfs", {}, ""));
    CHECK(parse_probe_override("fs=ext2 abstraction=lvm,cryptodisk uuid=u-1", "x") ==
          fs("ext2", {"lvm", "cryptodisk"}, "u-1"));
    CHECK_THROWS_WITH(parse_probe_override("filesystem=ext2", "grub-probe-boot"),
                      "grub-probe-boot: 'filesystem=ext2' is not fs=NAME, abstraction=A[,B] or uuid=UUID");
    CHECK_THROWS_WITH(parse_probe_override("uuid=1", "k"), "k: no fs=NAME given");
    FixedProbe fixed({{"/boot", fs("fat")}});
    CHECK(fixed.probe("/boot") == fs("fat"));
    CHECK_FALSE(fixed.probe("/other").error.empty());
}

TEST_CASE("probe: the real grub-probe answers or fails with its reason", "[grub][probe][real]") {
    NIXBOOT_NEED_PROGRAM(grub_probe, "grub-probe");
    // On a build machine grub-probe often cannot see the disk (a VM disk
    // without a partition table, a container): then the answer must be an
    // error, never a guess.
    GrubProbe probe;
    grub::test::TempDir tmp;
    FsInfo info = probe.probe(tmp.path());
    if (info.error.empty()) {
        CHECK_FALSE(info.fs.empty());
    } else {
        CHECK(info.error.starts_with("grub-probe --target=fs " + tmp.path().string() + ": "));
        CHECK(grub_can_write(info).writability == Writability::unknown);
    }
    FsInfo missing = probe.probe(tmp / "does-not-exist");
    CHECK_FALSE(missing.error.empty());
}
