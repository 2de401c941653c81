#include "boot/efivars.hpp"

#include "boot/util/error.hpp"
#include "boot/util/utf16.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace nixboot;

namespace {

const std::string guid = loader_vendor_guid;

// Writes an efivarfs-style file: 4-byte little-endian attributes + data.
void put_var(const std::filesystem::path& dir, const std::string& name, const std::string& data,
             std::uint32_t attributes = 7) {
    std::string content(4, '\0');
    for (int i = 0; i < 4; ++i)
        content[static_cast<std::size_t>(i)] = static_cast<char>((attributes >> (8 * i)) & 0xff);
    test::write_file(dir / (name + "-" + guid), content + data);
}

std::string utf16(const std::string& text) {
    const auto bytes = utf8_to_utf16le(text, Terminator::required);
    return std::string(bytes.begin(), bytes.end());
}

std::string var_file(const std::filesystem::path& dir, const std::string& name) {
    return (dir / (name + "-" + guid)).string();
}

}  // namespace

TEST_CASE("efivars: strings, numbers and lists in a plain directory", "[efivars]") {
    test::TempDir tmp;
    EfiVars vars(tmp.path());
    CHECK_FALSE(vars.uses_libefivar());
    CHECK_FALSE(vars.get_string(efivar_name::loader_info));
    CHECK_FALSE(vars.get_u64(efivar_name::loader_features));
    CHECK_FALSE(vars.get_string_list(efivar_name::loader_entries));

    put_var(tmp.path(), "LoaderInfo", utf16("systemd-boot 252.39-1~deb12u1"), 6);
    CHECK(vars.get_string(efivar_name::loader_info) == "systemd-boot 252.39-1~deb12u1");
    put_var(tmp.path(), "LoaderFeatures", std::string("\x7f\x03\x00\x00\x00\x00\x00\x00", 8));
    const auto features = vars.get_u64(efivar_name::loader_features);
    REQUIRE(features);
    CHECK((*features & loader_feature::boot_counting) != 0);
    CHECK((*features & loader_feature::entry_oneshot) != 0);
    CHECK((*features & loader_feature::saved_entry) != 0);
    CHECK((*features & loader_feature::preferred) == 0);
    put_var(tmp.path(), "LoaderEntries",
            utf16("nixos-generation-2+2-0.conf") + utf16("nixos-generation-1.conf") +
                utf16("auto-reboot-to-firmware-setup"));
    CHECK(vars.get_string_list(efivar_name::loader_entries) ==
          std::vector<std::string>{"nixos-generation-2+2-0.conf", "nixos-generation-1.conf",
                                   "auto-reboot-to-firmware-setup"});

    vars.set_string(efivar_name::loader_entry_oneshot, "nixos-generation-12+3.conf");
    CHECK(test::read_file(var_file(tmp.path(), "LoaderEntryOneShot")) ==
          std::string("\x07\x00\x00\x00", 4) + utf16("nixos-generation-12+3.conf"));
    vars.set_string(efivar_name::loader_entry_oneshot, "nixos-generation-1.conf");  // shorter: no old tail
    CHECK(test::read_file(var_file(tmp.path(), "LoaderEntryOneShot")) ==
          std::string("\x07\x00\x00\x00", 4) + utf16("nixos-generation-1.conf"));
    vars.set_string(efivar_name::loader_entry_default, "gen-\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(vars.get_string(efivar_name::loader_entry_default) == "gen-\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(vars.remove(efivar_name::loader_entry_oneshot));
    CHECK_FALSE(vars.remove(efivar_name::loader_entry_oneshot));
    CHECK_FALSE(std::filesystem::exists(var_file(tmp.path(), "LoaderEntryOneShot")));
    CHECK(vars.writable() == Writable::yes);
    CHECK(EfiVars(tmp / "missing").writable() == Writable::no);
}

TEST_CASE("efivars: untrusted values are refused with the variable and the cause", "[efivars]") {
    test::TempDir tmp;
    EfiVars vars(tmp.path());
    const auto prefix = [&](const std::string& name) {
        return "EFI variable " + name + " (" + var_file(tmp.path(), name) + "): ";
    };
    put_var(tmp.path(), "LoaderEntrySelected", std::string("a\0b\0c", 5));
    CHECK_THROWS_WITH(vars.get_string("LoaderEntrySelected"),
                      prefix("LoaderEntrySelected") + "invalid UTF-16: odd length (5 bytes)");
    put_var(tmp.path(), "LoaderEntrySelected", std::string("a\0\x00\xd8\0\0", 6));
    CHECK_THROWS_WITH(vars.get_string("LoaderEntrySelected"),
                      prefix("LoaderEntrySelected") + "invalid UTF-16: unpaired surrogate 0xd800 at byte 2");
    put_var(tmp.path(), "LoaderEntrySelected", std::string("a\0b\0", 4));
    CHECK_THROWS_WITH(vars.get_string("LoaderEntrySelected"),
                      prefix("LoaderEntrySelected") + "invalid UTF-16: missing NUL terminator");
    put_var(tmp.path(), "LoaderBootCountPath", std::string(5000, 'a'));
    CHECK_THROWS_WITH(vars.get_string("LoaderBootCountPath"), prefix("LoaderBootCountPath") + "larger than 4096 bytes");
    test::write_file(var_file(tmp.path(), "LoaderInfo"), "ab");
    CHECK_THROWS_WITH(vars.get_string("LoaderInfo"), prefix("LoaderInfo") + "shorter than its 4-byte attribute header");
    put_var(tmp.path(), "LoaderFeatures", "1234");
    CHECK_THROWS_WITH(vars.get_u64("LoaderFeatures"), prefix("LoaderFeatures") + "expected 8 bytes, found 4");
    put_var(tmp.path(), "LoaderEntries", utf16("a") + std::string("\0\0", 2) + utf16("b"));
    CHECK_THROWS_WITH(vars.get_string_list("LoaderEntries"),
                      prefix("LoaderEntries") + "invalid UTF-16: empty string at byte 4");
    CHECK_THROWS_WITH(vars.get_string("../../etc/passwd"), "invalid EFI variable name '../../etc/passwd'");
    CHECK_THROWS_WITH(vars.set_string("LoaderEntryOneShot", "bad\xff"),
                      "writing " + prefix("LoaderEntryOneShot") + "value is not valid UTF-8: invalid UTF-8 at byte 3");
    std::filesystem::create_symlink("/etc/hostname", var_file(tmp.path(), "LoaderEntryDefault"));
    CHECK_THROWS_WITH(vars.get_string("LoaderEntryDefault"),
                      "reading " + prefix("LoaderEntryDefault").substr(0, prefix("LoaderEntryDefault").size() - 2) +
                          ": Too many levels of symbolic links");
}

// systemd v252-v262 src/boot/efi: efivar_get (util.c) and efivar_get_str16
// (efivars.c) write a NUL over the last code unit of a value that lacks one.
TEST_CASE("efivars: a loader string reads as systemd-boot reads it, and says where that differs", "[efivars]") {
    test::TempDir tmp;
    EfiVars vars(tmp.path());
    const auto shown = "EFI variable LoaderEntryDefault (" + var_file(tmp.path(), "LoaderEntryDefault") + "): ";
    std::string quirk = "unset";
    CHECK_FALSE(vars.get_loader_string("LoaderEntryDefault", &quirk));
    put_var(tmp.path(), "LoaderEntryDefault", utf16("nixos-generation-2.conf"));
    CHECK(vars.get_loader_string("LoaderEntryDefault", &quirk) == "nixos-generation-2.conf");
    CHECK(quirk.empty());
    const auto unterminated = utf16("nixos-generation-2.conf");
    put_var(tmp.path(), "LoaderEntryDefault", unterminated.substr(0, unterminated.size() - 2));
    CHECK(vars.get_loader_string("LoaderEntryDefault", &quirk) == "nixos-generation-2.con");
    CHECK(quirk == shown +
                       "not NUL-terminated: systemd-boot reads it without its last character, as "
                       "'nixos-generation-2.con'");
    CHECK_THROWS_WITH(vars.get_string("LoaderEntryDefault"), shown + "invalid UTF-16: missing NUL terminator");
    put_var(tmp.path(), "LoaderEntryDefault", utf16("a.conf") + utf16("b.conf"));
    CHECK(vars.get_loader_string("LoaderEntryDefault", &quirk) == "a.conf");
    CHECK(quirk == shown + "a NUL before its end: systemd-boot reads it up to there, as 'a.conf'");
    put_var(tmp.path(), "LoaderEntryDefault", std::string("a\0b", 3));
    CHECK_THROWS_WITH(vars.get_loader_string("LoaderEntryDefault", &quirk),
                      shown + "invalid UTF-16: odd length (3 bytes)");
    put_var(tmp.path(), "LoaderEntryDefault", std::string("\x00\xd8\0\0", 4));
    CHECK_THROWS_WITH(vars.get_loader_string("LoaderEntryDefault", &quirk),
                      shown + "invalid UTF-16: unpaired surrogate 0xd800 at byte 0");
}

TEST_CASE("efivars: the immutable flag is cleared before rewriting and deleting", "[efivars][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("setting FS_IMMUTABLE_FL");
    test::TempDir tmp;
    test::TmpfsMount mount(tmp / "vars", "1m");
    EfiVars vars(tmp / "vars");
    vars.set_string("LoaderEntryDefault", "nixos-generation-1.conf");
    const auto set_immutable = [&] {
        const int fd = ::open(var_file(tmp / "vars", "LoaderEntryDefault").c_str(), O_RDONLY);
        REQUIRE(fd >= 0);
        int flags = 0;
        const bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
                        (flags |= FS_IMMUTABLE_FL, ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0);
        ::close(fd);
        return ok;
    };
    if (!set_immutable()) {
        NIXBOOT_SKIP("this kernel's tmpfs has no immutable flag");
    }
    // Proof the flag bites: a plain unlink fails.
    CHECK(::unlink(var_file(tmp / "vars", "LoaderEntryDefault").c_str()) != 0);
    vars.set_string("LoaderEntryDefault", "nixos-generation-2.conf");
    CHECK(vars.get_string("LoaderEntryDefault") == "nixos-generation-2.conf");
    REQUIRE(set_immutable());
    CHECK(vars.remove("LoaderEntryDefault"));
    CHECK_FALSE(vars.get_string("LoaderEntryDefault"));
}

TEST_CASE("efivars: a read-only directory is not writable and writes fail clearly", "[efivars][root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("remounting a tmpfs read-only");
    test::TempDir tmp;
    test::TmpfsMount mount(tmp / "vars", "1m");
    EfiVars(tmp / "vars").set_string("LoaderEntryDefault", "a.conf");
    mount.remount_read_only();
    EfiVars vars(tmp / "vars");
    CHECK(vars.writable() == Writable::no);
    CHECK(vars.get_string("LoaderEntryDefault") == "a.conf");
    CHECK_THROWS_WITH(vars.set_string("LoaderEntryDefault", "b.conf"),
                      nixboot::test::starts_with("writing EFI variable LoaderEntryDefault (" +
                                                 var_file(tmp / "vars", "LoaderEntryDefault") + "): ") &&
                          Catch::Matchers::EndsWith("Read-only file system"));
    CHECK_THROWS_WITH(vars.remove("LoaderEntryDefault"), "deleting EFI variable LoaderEntryDefault (" +
                                                             var_file(tmp / "vars", "LoaderEntryDefault") +
                                                             "): Read-only file system");
}

// libefivar binds to EFIVARFS_PATH when the process loads it, so its side of
// the test runs in a child process started with EFIVARFS_PATH set.
TEST_CASE("efivars: libefivar child", "[.libefivar-child]") {
    const char* dir = std::getenv("NIXBOOT_TEST_EFIVARS");
    REQUIRE(dir);
    EfiVars vars(dir);
    REQUIRE(vars.uses_libefivar());
    CHECK(vars.get_string(efivar_name::loader_info) == "systemd-boot 252.39-1~deb12u1");
    CHECK(vars.get_u64(efivar_name::loader_features) == 0x37fu);
    vars.set_string(efivar_name::loader_entry_oneshot, "nixos-generation-12-specialisation-long+3.conf");
    vars.set_string(efivar_name::loader_entry_oneshot, "nixos-generation-12+3.conf");
    CHECK(vars.get_string(efivar_name::loader_entry_oneshot) == "nixos-generation-12+3.conf");
    CHECK(vars.remove(efivar_name::loader_entry_default));
    CHECK_FALSE(vars.remove(efivar_name::loader_entry_default));
    CHECK_THROWS_WITH(vars.get_string(efivar_name::loader_entry_selected),
                      "EFI variable LoaderEntrySelected (" + var_file(dir, "LoaderEntrySelected") +
                          "): invalid UTF-16: odd length (3 bytes)");
    CHECK(vars.writable() == Writable::yes);
}

TEST_CASE("efivars: libefivar and the direct path read each other's files", "[efivars]") {
    test::TempDir tmp;
    put_var(tmp.path(), "LoaderInfo", utf16("systemd-boot 252.39-1~deb12u1"), 6);
    put_var(tmp.path(), "LoaderFeatures", std::string("\x7f\x03\x00\x00\x00\x00\x00\x00", 8));
    put_var(tmp.path(), "LoaderEntrySelected", std::string("ab\0", 3));
    EfiVars(tmp.path()).set_string(efivar_name::loader_entry_default, "nixos-generation-11.conf");

    const std::string env_path = "EFIVARFS_PATH=" + tmp.path().string() + "/";
    const std::string env_dir = "NIXBOOT_TEST_EFIVARS=" + tmp.path().string();
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        const int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 1);
        char* argv[] = {const_cast<char*>("nixboot_tests"), const_cast<char*>("[libefivar-child]"), nullptr};
        char* envp[] = {const_cast<char*>(env_path.c_str()), const_cast<char*>(env_dir.c_str()), nullptr};
        ::execve("/proc/self/exe", argv, envp);
        ::_exit(127);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);  // the child's own checks passed
    // What libefivar wrote, read back by the direct path and byte for byte.
    EfiVars vars(tmp.path());
    CHECK(vars.get_string(efivar_name::loader_entry_oneshot) == "nixos-generation-12+3.conf");
    CHECK(test::read_file(var_file(tmp.path(), "LoaderEntryOneShot")) ==
          std::string("\x07\x00\x00\x00", 4) + utf16("nixos-generation-12+3.conf"));
    CHECK_FALSE(vars.get_string(efivar_name::loader_entry_default));
}

// Runs this test binary again with EFIVARFS_PATH=dir/ (so libefivar binds
// to dir at load) and the given hidden test tag; returns its exit status.
int run_child(const std::string& tag, const std::filesystem::path& dir, const std::filesystem::path& other) {
    const std::string env_path = "EFIVARFS_PATH=" + dir.string() + "/";
    const std::string env_dir = "NIXBOOT_TEST_EFIVARS=" + dir.string();
    const std::string env_other = "NIXBOOT_TEST_EFIVARS_OTHER=" + other.string();
    const pid_t child = ::fork();
    if (child < 0) return -1;
    if (child == 0) {
        const int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 1);
        char* argv[] = {const_cast<char*>("nixboot_tests"), const_cast<char*>(tag.c_str()), nullptr};
        char* envp[] = {const_cast<char*>(env_path.c_str()), const_cast<char*>(env_dir.c_str()),
                        const_cast<char*>(env_other.c_str()), nullptr};
        ::execve("/proc/self/exe", argv, envp);
        ::_exit(127);
    }
    int status = 0;
    if (::waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

TEST_CASE("efivars: setenv child", "[.libefivar-setenv-child]") {
    const char* dir = std::getenv("NIXBOOT_TEST_EFIVARS");
    const char* other = std::getenv("NIXBOOT_TEST_EFIVARS_OTHER");
    REQUIRE(dir);
    REQUIRE(other);
    // Before any EfiVars exists: point the environment elsewhere, as a caller
    // might for --efivars. libefivar stays bound to `dir`.
    REQUIRE(::setenv("EFIVARFS_PATH", (std::string(other) + "/").c_str(), 1) == 0);
    EfiVars vars(other);
    CHECK_FALSE(vars.uses_libefivar());
    vars.set_string(efivar_name::loader_entry_default, "nixos-generation-3.conf");
    CHECK(EfiVars(dir).uses_libefivar());
}

TEST_CASE("efivars: setenv(EFIVARFS_PATH) after start does not redirect libefivar", "[efivars]") {
    test::TempDir tmp;
    std::filesystem::create_directories(tmp / "bound");
    std::filesystem::create_directories(tmp / "other");
    CHECK(run_child("[libefivar-setenv-child]", tmp / "bound", tmp / "other") == 0);
    // The write went where it was asked to go, not into libefivar's directory.
    CHECK(test::read_file(var_file(tmp / "other", "LoaderEntryDefault")) ==
          std::string("\x07\x00\x00\x00", 4) + utf16("nixos-generation-3.conf"));
    CHECK_FALSE(std::filesystem::exists(var_file(tmp / "bound", "LoaderEntryDefault")));
}
