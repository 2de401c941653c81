// Real faults under the real `nixboot` binary: a full or read-only ESP (and
// GRUB /boot), a full state directory, a 1 GB boot.json, 10 000 generations.
// The file systems are small tmpfs mounts (and a loop-mounted vfat image) in
// a mount namespace of the test process's own (each ctest test is its own process), so the host never sees
// them. After every fault: one clear line, the default still good with its
// files (G1), no good file lost (G4), every file parsing.
#include "boot/journal.hpp"
#include "boot/util/fd.hpp"
#include "boot/util/process.hpp"
#include "tests/cli/rig.hpp"

#include "tests/catch.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <iostream>
#include <optional>

using namespace nixboot;
using nixboot::test::Rig;
using nixboot::test::run_program;
using nixboot::test::RunResult;

namespace {

const std::string sd252 = "systemd-boot 252.39-1~deb12u1";

std::vector<std::string> cmd(const Rig& rig, std::vector<std::string> rest) {
    std::vector<std::string> argv{NIXBOOT_BIN,
                                  "--esp",
                                  rig.esp.string(),
                                  "--profile",
                                  rig.profile.string(),
                                  "--efivars",
                                  rig.efivars.string(),
                                  "--state",
                                  rig.state.string(),
                                  "--config",
                                  (rig.tmp / "nixboot.conf").string()};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return argv;
}

Rig& with_config(Rig& rig) {
    test::write_file(rig.tmp / "nixboot.conf", "");
    return rig;
}

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

// G1, G4 and "every file parses" after a fault, for systemd-boot.
void check_safe(const Rig& rig, const std::string& default_id, const std::map<std::string, std::string>& good_before) {
    CHECK(rig.pinned_good_default() == default_id);
    const auto good_after = rig.good_files();
    for (const auto& [file, content] : good_before) {
        auto it = good_after.find(file);
        INFO(file);
        CHECK((it != good_after.end() && it->second == content));
    }
    for (const auto& [file, content] : good_after) CHECK(content != "<missing>");
    CHECK(rig.unparsable() == "");
    auto st = run_program(cmd(rig, {"--json", "status"}));
    INFO(st.err);
    CHECK(st.status == 0);
}

// Fills the file system of `dir` until at most `room` bytes are free: a
// filler file, removed to free the space again.
void fill_leaving(const std::filesystem::path& dir, std::uintmax_t room) {
    const auto filler = dir / "filler";
    {
        std::ofstream out(filler, std::ios::binary);
        const std::string block(64 * 1024, 'f');
        while (out.write(block.data(), block.size()) && out.flush()) {}
    }
    const auto size = std::filesystem::file_size(filler);
    std::filesystem::resize_file(filler, size > room ? size - room : 0);
}

// A vfat image (what a real ESP is) loop-mounted on `dir` for the object's
// lifetime; in the test's private mount namespace.
class VfatMount {
public:
    VfatMount(const std::filesystem::path& image, const std::filesystem::path& dir, std::uintmax_t bytes) : dir_(dir) {
        const std::string mkfs = test::find_program("mkfs.vfat"), mount = test::find_program("mount");
        REQUIRE_FALSE(mkfs.empty());
        REQUIRE_FALSE(mount.empty());
        { std::ofstream create(image); }
        std::filesystem::resize_file(image, bytes);
        auto r = run_program({mkfs, image.string()});
        INFO(r.out << r.err);
        REQUIRE(r.status == 0);
        std::filesystem::create_directories(dir);
        r = run_program({mount, "-o", "loop", image.string(), dir.string()});
        INFO(r.out << r.err);
        REQUIRE(r.status == 0);
    }
    ~VfatMount() { ::umount2(dir_.c_str(), MNT_DETACH); }
    VfatMount(const VfatMount&) = delete;
    VfatMount& operator=(const VfatMount&) = delete;

private:
    std::filesystem::path dir_;
};

// The ESP-full scenario on whatever is mounted on rig.esp.
void full_esp_install(Rig& rig) {
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    const auto good = rig.good_files();
    const auto before = rig.entries();
    auto top = test::make_generation(rig.store, rig.profile, 4);
    test::write_file(top / "kernel-file", std::string(400 * 1024, 'k'));
    fill_leaving(rig.esp, 128 * 1024);

    auto r = run_program(cmd(rig, {"install"}));
    CHECK(r.status == 1);
    CHECK(one_line(r.err));
    CHECK_THAT(r.err, nixboot::test::contains("No space left on device"));
    CHECK_THAT(r.err, nixboot::test::contains("EFI/nixos/"));
    CHECK(rig.entries() == before);
    check_safe(rig, "nixos-generation-2", good);

    std::filesystem::remove(rig.esp / "filler");
    r = run_program(cmd(rig, {"install"}));
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(rig.entries().back() == "nixos-generation-4+1-0.conf");
    check_safe(rig, "nixos-generation-2", good);
}

}  // namespace

TEST_CASE(
    "faults: a full ESP (tmpfs) fails install with the file and ENOSPC, loses nothing, the next install after freeing space succeeds",
    "[faults][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("a small tmpfs as the ESP, in a private mount namespace");
    test::enter_private_mount_namespace();
    Rig rig(3, sd252, 2);
    with_config(rig);
    test::TmpfsMount mnt(rig.esp, "4m");
    full_esp_install(rig);
}

TEST_CASE(
    "faults: a full ESP (vfat) fails install with the file and ENOSPC, loses nothing, the next install after freeing space succeeds",
    "[faults][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("a loop-mounted vfat image as the ESP, in a private mount namespace");
    NIXBOOT_NEED_PROGRAM(mkfs_vfat, "mkfs.vfat");
    NIXBOOT_NEED_PROGRAM(mount_program, "mount");
    if (!std::filesystem::exists("/dev/loop-control")) NIXBOOT_SKIP("needs loop devices (/dev/loop-control)");
    if (test::read_file("/proc/filesystems").find("\tvfat\n") == std::string::npos)
        NIXBOOT_SKIP("needs vfat in the kernel (/proc/filesystems)");
    test::enter_private_mount_namespace();
    Rig rig(3, sd252, 2);
    with_config(rig);
    VfatMount mnt(rig.tmp / "esp.img", rig.esp, 8 << 20);
    full_esp_install(rig);
}

TEST_CASE("faults: a read-only ESP fails install, try, mark-good and rollback with one line, changing nothing",
          "[faults][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("a read-only tmpfs as the ESP, in a private mount namespace");
    test::enter_private_mount_namespace();
    Rig rig(3, sd252, 2);
    with_config(rig);
    test::TmpfsMount mnt(rig.esp, "1m");
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    REQUIRE(run_program(cmd(rig, {"mark-good", "3"})).status == 0);  // good: 2 and 3, default 3
    test::make_generation(rig.store, rig.profile, 4);
    mnt.remount_read_only();
    const auto good = rig.good_files();
    const auto before = rig.summary();
    // `try 1 --tries 2` is armed by sort order, which an older generation
    // cannot have: it is refused before anything is written (an ESP fault
    // must not change that line).
    for (const auto& verb : std::vector<std::vector<std::string>>{
             {"install"}, {"try", "1", "--tries", "2"}, {"mark-good", "1"}, {"rollback"}}) {
        auto r = run_program(cmd(rig, verb));
        INFO(verb[0] << ": " << r.out << r.err);
        CHECK(r.status == 1);
        CHECK(one_line(r.err));
        CHECK_THAT(r.err, nixboot::test::contains(verb[0] == "try" ? "sorts before it" : "Read-only file system"));
        CHECK(rig.summary() == before);
        check_safe(rig, "nixos-generation-3", good);
    }
}

TEST_CASE("faults: a full state directory fails install, try and mark-bad with the state directory named, G1 kept",
          "[faults][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("a small tmpfs as the state directory, in a private mount namespace");
    test::enter_private_mount_namespace();
    Rig rig(3, sd252, 2);
    with_config(rig);
    test::TmpfsMount mnt(rig.state, "64k");
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    const auto good = rig.good_files();
    test::make_generation(rig.store, rig.profile, 4);
    // tmpfs hands out whole pages: the journal's last page would take a few
    // more records. A padding record ends it on a page boundary, then a filler
    // takes every page left, so any write in STATE needs a page there is not.
    const auto journal_size = std::filesystem::file_size(rig.state / "journal");
    JournalRecord pad;
    pad.event = JournalEvent::install;
    const auto bare = format_journal_line(pad).size() + 1;  // and its newline
    pad.reason = std::string((4096 - (journal_size + bare) % 4096) % 4096, 'p');
    append_journal(rig.state, pad);
    REQUIRE(std::filesystem::file_size(rig.state / "journal") % 4096 == 0);
    fill_leaving(rig.state, 0);
    for (const auto& verb : std::vector<std::vector<std::string>>{{"install"}, {"try", "3"}, {"mark-bad", "3"}}) {
        auto r = run_program(cmd(rig, verb));
        INFO(verb[0] << ": " << r.out << r.err);
        CHECK(r.status == 1);
        CHECK(one_line(r.err));
        CHECK_THAT(r.err, nixboot::test::contains(rig.state.string()));
        check_safe(rig, "nixos-generation-2", good);
    }
    // Room again: every verb works and the record is consistent.
    std::filesystem::remove(rig.state / "filler");
    for (const auto& verb : std::vector<std::vector<std::string>>{{"install"}, {"try", "4"}, {"mark-bad", "4"}}) {
        auto r = run_program(cmd(rig, verb));
        INFO(verb[0] << ": " << r.out << r.err);
        CHECK(r.status == 0);
    }
    check_safe(rig, "nixos-generation-2", good);
}

TEST_CASE("faults: a 1 GB boot.json is refused with one line, the other generations installed", "[faults]") {
    Rig rig(3, sd252, 2);
    with_config(rig);
    auto top = test::make_generation(rig.store, rig.profile, 4);
    std::filesystem::resize_file(top / "boot.json", std::uintmax_t{1} << 30);  // sparse: no disk used
    auto r = run_program(cmd(rig, {"install"}));
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.err == "nixboot: warning: skipped generation 4: reading '" + (top / "boot.json").string() +
                       "': larger than 1048576 bytes\n");
    CHECK(rig.entries() == std::vector<std::string>{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf",
                                                    "nixos-generation-3+1-0.conf"});
    check_safe(rig, "nixos-generation-2", rig.good_files());
}

TEST_CASE("faults: 10000 generations install, and status and list show them", "[faults][scale]") {
    // Real profiles share kernels between generations: one kernel and initrd
    // for all, each generation its own boot.json and init.
    // As root the ESP and state are a tmpfs (in a private mount namespace) so
    // 20 000 fsyncs on a loaded disk cannot reach ctest's timeout; the run
    // on disk is timed by hand (the figures are in the test's output).
    constexpr unsigned count = 10000;
    Rig rig(0, sd252);
    with_config(rig);
    std::optional<test::TmpfsMount> esp_fs, state_fs;
    if (::geteuid() == 0) {
        test::enter_private_mount_namespace();
        esp_fs.emplace(rig.esp, "256m");
        state_fs.emplace(rig.state, "64m");
    }
    test::write_file(rig.store / "kernel", "kernel");
    test::write_file(rig.store / "initrd", "initrd");
    std::filesystem::create_directories(rig.profile.parent_path());
    for (unsigned n = 1; n <= count; ++n) {
        const auto top = rig.store / ("system-" + std::to_string(n));
        test::write_file(top / "init", "");
        test::write_file(top / "boot.json",
                         "{\"org.nixos.bootspec.v1\": {\"label\": \"NixOS\", \"kernel\": \"" +
                             (rig.store / "kernel").string() + "\", \"initrd\": \"" + (rig.store / "initrd").string() +
                             "\", \"init\": \"" + (top / "init").string() + "\", \"toplevel\": \"" + top.string() +
                             "\", \"system\": \"x86_64-linux\", \"kernelParams\": [\"gen=" + std::to_string(n) +
                             "\"]}}");
        std::filesystem::create_directory_symlink(
            top, rig.profile.parent_path() / ("system-" + std::to_string(n) + "-link"));
    }
    rig.point_profile(count);
    auto timed = [&](std::vector<std::string> verb) {
        auto t0 = std::chrono::steady_clock::now();
        auto r = run_program(cmd(rig, verb));
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        std::cout << "10000 generations: " << verb.back() << " took " << ms << " ms"
                  << std::endl;  // the figure, never asserted (flushed: a fork must not repeat it)
        return r;
    };
    auto r = timed({"install"});
    REQUIRE(r.status == 0);
    CHECK(rig.entries().size() == count);
    CHECK(rig.pinned_good_default() == "nixos-generation-10000");
    r = timed({"install"});  // the no-op
    CHECK(r.status == 0);
    r = timed({"--json", "list"});
    REQUIRE(r.status == 0);
    auto list = nlohmann::json::parse(r.out);
    REQUIRE(list.size() == count);
    CHECK(list[0]["id"] == "nixos-generation-10000");
    CHECK(list[0]["default"] == true);
    CHECK(list[count - 1]["id"] == "nixos-generation-1");
    CHECK(list[count - 1]["state"] == "trial");
    r = timed({"--json", "status"});
    REQUIRE(r.status == 0);
    auto st = nlohmann::json::parse(r.out);
    CHECK(st["default"] == "nixos-generation-10000");
    CHECK(st["entries"].size() == count);
}

TEST_CASE(
    "faults: a full GRUB /boot fails install with the file and ENOSPC, loses nothing, and the next install after freeing space succeeds",
    "[faults][grub][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("a small tmpfs as /boot, in a private mount namespace");
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    NIXBOOT_NEED_PROGRAM(grub_script_check, "grub-script-check");
    test::enter_private_mount_namespace();
    Rig rig(3, "", 2);
    test::write_file(rig.tmp / "cmdline", "ro quiet\n");
    test::write_file(rig.tmp / "nixboot.conf", "grub-device-path = /\ngrub-probe-boot = fs=ext2\ngrub-cmdline = " +
                                                   (rig.tmp / "cmdline").string() + "\n");
    test::TmpfsMount mnt(rig.esp, "4m");
    auto grub = [&](std::vector<std::string> rest) {
        rest.insert(rest.begin(), {"--bootloader", "grub"});
        return run_program(cmd(rig, rest));
    };
    // Every file under /boot with its content.
    auto files = [&] {
        std::map<std::string, std::string> out;
        for (const auto& e : std::filesystem::recursive_directory_iterator(rig.esp))
            if (e.is_regular_file()) out[e.path().lexically_relative(rig.esp).string()] = test::read_file(e.path());
        return out;
    };
    auto check_grub_safe = [&] {
        CHECK(run_program({grub_editenv, (rig.esp / "grub/grubenv").string(), "list"}).out ==
              "nixboot_default=nixos-generation-2\n");
        CHECK(run_program({grub_script_check, (rig.esp / "grub/grub.cfg").string()}).status == 0);
        auto st = grub({"--json", "status"});
        INFO(st.err);
        REQUIRE(st.status == 0);
        CHECK(nlohmann::json::parse(st.out)["default"] == "nixos-generation-2");
    };
    auto r = grub({"install"});
    INFO(r.err);
    REQUIRE(r.status == 0);
    auto top = test::make_generation(rig.store, rig.profile, 4);
    test::write_file(top / "kernel-file", std::string(400 * 1024, 'k'));
    fill_leaving(rig.esp, 128 * 1024);
    const auto before = files();

    r = grub({"install"});
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(one_line(r.err));
    CHECK_THAT(r.err, nixboot::test::contains("No space left on device"));
    CHECK(files() == before);  // nothing lost, nothing half-written
    check_grub_safe();

    std::filesystem::remove(rig.esp / "filler");
    r = grub({"install"});
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(test::read_file(rig.esp / "grub/grub.cfg").find("nixos-generation-4") != std::string::npos);
    for (const auto& [file, content] : before)
        if (file.starts_with("kernels/")) CHECK(files()[file] == content);  // nothing of the good generations lost
    check_grub_safe();
}

namespace {

// With the NVRAM refusing writes: `try 3` fails with one line naming
// LoaderEntryOneShot and `cause`, arms nothing and changes no entry, the
// default stays good (G1); after `clear()`, the retry arms it.
void try_fails_on_nvram_then_arms(const Rig& rig, const std::map<std::string, std::string>& good,
                                  const std::string& cause, const std::function<void()>& clear) {
    const auto entries = rig.entries();
    auto r = run_program(cmd(rig, {"try", "3"}));
    INFO(r.out << r.err);
    CHECK(r.status == 1);
    CHECK(one_line(r.err));
    CHECK_THAT(r.err, nixboot::test::contains("LoaderEntryOneShot"));
    CHECK_THAT(r.err, nixboot::test::contains(cause));
    CHECK_FALSE(rig.var(efivar_name::loader_entry_oneshot));
    CHECK(rig.entries() == entries);
    check_safe(rig, "nixos-generation-2", good);
    auto st = nlohmann::json::parse(run_program(cmd(rig, {"--json", "status"})).out);
    CHECK(st["armed"].is_null());

    clear();
    r = run_program(cmd(rig, {"try", "3"}));
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(rig.var(efivar_name::loader_entry_oneshot).has_value());
    check_safe(rig, "nixos-generation-2", good);
}

}  // namespace

// Issue 14 item 4, ENOSPC in NVRAM: efivarfs answers a write the NVRAM has no
// room for with ENOSPC; a full tmpfs as the efivars directory gives the same
// errno to the same write. EIO: the next test.
// With systemd-boot only `try` writes a variable (LoaderEntryOneShot);
// mark-good and rollback only remove variables, which needs no room.
TEST_CASE(
    "faults: full NVRAM (efivars on a full tmpfs) fails try with the variable and ENOSPC, the default stays good, "
    "a retry after room is freed arms it",
    "[faults][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("a small tmpfs as the efivars directory, in a private mount namespace");
    test::enter_private_mount_namespace();
    Rig rig(3, sd252, 2);
    with_config(rig);
    test::TmpfsMount mnt(rig.efivars, "64k");
    EfiVars(rig.efivars).set_string(efivar_name::loader_info, sd252);
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    const auto good = rig.good_files();
    fill_leaving(rig.efivars, 0);
    try_fails_on_nvram_then_arms(rig, good, "No space left on device",
                                 [&] { std::filesystem::remove(rig.efivars / "filler"); });
}

namespace {

// tests/cli/eio_fs.py mounted over `mountpoint` (a pass-through of `backing`)
// in this process's mount namespace; while `control` exists its write(2)s
// answer EIO. Unmounted when it goes.
class EioMount {
public:
    EioMount(const std::filesystem::path& backing, const std::filesystem::path& mountpoint,
             const std::filesystem::path& control)
        : mountpoint_(mountpoint) {
        std::filesystem::create_directories(backing);
        struct stat before {};
        ::stat(mountpoint.c_str(), &before);
        const std::string helper = std::string(NIXBOOT_SOURCE_DIR) + "/tests/cli/eio_fs.py";
        const auto log = backing.parent_path() / "eio_fs.log";
        {
            Fd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            REQUIRE(out);
            SpawnOptions so;
            so.stdout_fd = so.stderr_fd = out.get();
            so.stdin_null = true;
            pid_ = spawn_process({helper, backing.string(), mountpoint.string(), control.string()}, so);
        }
        for (int i = 0; i < 300; ++i) {  // at most 30 s
            struct stat now {};
            if (::stat(mountpoint.c_str(), &now) == 0 && now.st_dev != before.st_dev) return;
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait_process(pid_, "eio_fs.py");
        }
        FAIL("tests/cli/eio_fs.py did not mount " << mountpoint << ": " << test::read_file(log));
    }
    ~EioMount() {
        if (pid_ <= 0) return;
        ::umount2(mountpoint_.c_str(), MNT_DETACH);
        try {
            wait_process(pid_, "eio_fs.py");
        } catch (const std::exception&) {}  // a destructor: nothing left to do
    }
    EioMount(const EioMount&) = delete;
    EioMount& operator=(const EioMount&) = delete;

private:
    std::filesystem::path mountpoint_;
    pid_t pid_ = -1;
};

}  // namespace

// Issue 14 item 4, EIO from NVRAM: efivarfs answers EIO when the firmware's
// SetVariable() fails with EFI_DEVICE_ERROR. A FUSE pass-through whose
// write(2) answers EIO on demand (tests/cli/eio_fs.py) as the efivars
// directory gives that errno to the same write.
TEST_CASE(
    "faults: an NVRAM write failing with EIO (efivars on a FUSE mount) fails try with the variable and EIO, the "
    "default stays good, a retry after the fault clears arms it",
    "[faults][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("a FUSE mount as the efivars directory, in a private mount namespace");
    if (!std::filesystem::exists("/dev/fuse")) NIXBOOT_SKIP("needs /dev/fuse");
    if (!std::filesystem::exists("/usr/lib/python3/dist-packages/fuse.py"))
        NIXBOOT_SKIP("needs python3-fuse (scripts/install-deps)");
    test::enter_private_mount_namespace();
    Rig rig(3, sd252, 2);
    with_config(rig);
    const auto control = rig.tmp / "nvram-fails";
    EioMount mnt(rig.tmp / "nvram", rig.efivars, control);
    EfiVars(rig.efivars).set_string(efivar_name::loader_info, sd252);
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    const auto good = rig.good_files();
    test::write_file(control, "");
    try_fails_on_nvram_then_arms(rig, good, "Input/output error", [&] { std::filesystem::remove(control); });
}
