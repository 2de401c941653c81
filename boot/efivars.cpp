#include "boot/efivars.hpp"

#include "boot/util/crash_point.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"
#include "boot/util/fd.hpp"
#include "boot/util/utf16.hpp"

// libefivar 37's header has no extern "C" guard of its own.
extern "C" {
#include <efivar/efivar.h>
}

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

namespace nixboot {

namespace {

constexpr std::size_t max_string_bytes = 4096;
constexpr long efivarfs_magic = 0xde5e81e4;

// libefivar reads EFIVARFS_PATH once, when it is loaded (before main), and
// keeps that directory for the life of the process: setenv() later has no
// effect (verified with Debian's libefivar 37). So libefivar serves exactly
// one directory per process; every other directory is read and written here
// directly, in the same format (4-byte attributes + data in "Name-GUID").
const std::string& libefivar_dir() {
    // The process's initial environment (what libefivar saw when it was
    // loaded), not getenv(): a later setenv() must not make us believe that
    // libefivar serves another directory.
    static const std::string dir = [] {
        std::string initial = "/sys/firmware/efi/efivars/";
        std::optional<std::string> environ_block;
        try {
            environ_block = read_file_if_exists("/proc/self/environ", 1 << 20);
        } catch (const Error&) {}
        if (environ_block) {
            std::string_view rest = *environ_block;
            while (!rest.empty()) {
                const std::size_t end = std::min(rest.find('\0'), rest.size());
                const std::string_view var = rest.substr(0, end);
                if (var.starts_with("EFIVARFS_PATH=")) initial = std::string(var.substr(14));
                rest.remove_prefix(std::min(end + 1, rest.size()));
            }
        } else if (const char* env = std::getenv("EFIVARFS_PATH")) {
            initial = env;  // no /proc (early boot): the best we know
        }
        return initial;
    }();
    return dir;
}

bool same_directory(const std::filesystem::path& a, const std::filesystem::path& b) {
    struct stat sa {
    }, sb{};
    if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool is_efivarfs(const std::filesystem::path& dir) {
    struct statfs st {};
    return ::statfs(dir.c_str(), &st) == 0 && static_cast<long>(st.f_type) == efivarfs_magic;
}

// Validates a variable name: it becomes a file name.
void validate_name(std::string_view name) {
    if (name.empty() || name.size() > 128 || name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos ||
        name == "." || name == "..")
        throw Error("invalid EFI variable name '" + std::string(name) + "'");
}

// systemd-boot's vendor GUID, loader_vendor_guid, as libefivar's struct (its
// fourth field is stored big-endian, as efi_str_to_guid stores it). Built as
// a prvalue: libefivar 39 declares efi_guid_t with 1-byte alignment, and
// copying a named one makes clang 21 warn (-Walign-mismatch). Byte for byte
// what efi_str_to_guid(loader_vendor_guid) gives (checked with libefivar 37
// and 39).
efi_guid_t loader_guid() {
    constexpr std::uint16_t d = 0xb6c7;
    return efi_guid_t{0x4a67b082,
                      0x0a4c,
                      0x41cf,
                      std::endian::native == std::endian::little ? __builtin_bswap16(d) : d,
                      {0x44, 0x0b, 0x29, 0xbb, 0x8c, 0x4f}};
}

// Clears FS_IMMUTABLE_FL (set by efivarfs on non-standard variables) so the
// file can be rewritten or deleted. Harmless where the flag is unsupported.
void make_mutable(const std::filesystem::path& file) {
    Fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!fd) {
        if (errno == ENOENT) return;
        throw_errno("opening '" + file.string() + "' to clear its immutable flag");
    }
    int flags = 0;
    if (::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0) return;  // ENOTTY etc.: no flags here
    if (!(flags & FS_IMMUTABLE_FL)) return;
    flags &= ~FS_IMMUTABLE_FL;
    if (::ioctl(fd.get(), FS_IOC_SETFLAGS, &flags) != 0)
        throw_errno("clearing the immutable flag of '" + file.string() + "'");
}

}  // namespace

EfiVars::EfiVars(std::filesystem::path dir) : dir_(std::move(dir)) {
    use_libefivar_ = same_directory(dir_, libefivar_dir()) && efi_variables_supported();
    spdlog::debug("EFI variables in '{}' through {}", dir_.string(),
                  use_libefivar_ ? "libefivar" : "direct file access");
}

std::filesystem::path EfiVars::file_of(std::string_view name) const {
    return dir_ / (std::string(name) + "-" + loader_vendor_guid);
}

std::optional<std::vector<std::uint8_t>> EfiVars::get_raw(std::string_view name, std::size_t max_bytes) const {
    validate_name(name);
    const std::string file = file_of(name).string();
    const std::string shown = "EFI variable " + std::string(name) + " (" + file + ")";
    if (use_libefivar_) {
        const std::string cname(name);
        size_t size = 0;
        if (efi_get_variable_size(loader_guid(), cname.c_str(), &size) != 0) {
            if (errno == ENOENT) return std::nullopt;
            throw_errno("reading " + shown);
        }
        if (size > max_bytes) throw Error(shown + ": larger than " + std::to_string(max_bytes) + " bytes");
        std::uint8_t* data = nullptr;
        std::uint32_t attributes = 0;
        if (efi_get_variable(loader_guid(), cname.c_str(), &data, &size, &attributes) != 0) {
            if (errno == ENOENT) return std::nullopt;
            throw_errno("reading " + shown);
        }
        std::vector<std::uint8_t> out(data, data + size);
        std::free(data);
        if (out.size() > max_bytes) throw Error(shown + ": larger than " + std::to_string(max_bytes) + " bytes");
        return out;
    }
    Fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return std::nullopt;
        throw_errno("reading " + shown);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("reading " + shown);
    if (!S_ISREG(st.st_mode)) throw Error(shown + ": not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes + 4)
        throw Error(shown + ": larger than " + std::to_string(max_bytes) + " bytes");
    std::vector<std::uint8_t> buffer(max_bytes + 5);
    std::size_t got = 0;
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer.data() + got, buffer.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("reading " + shown);
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
        if (got == buffer.size()) throw Error(shown + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
    fd.close(file.c_str());
    if (got < 4) throw Error(shown + ": shorter than its 4-byte attribute header");
    return std::vector<std::uint8_t>(buffer.begin() + 4, buffer.begin() + static_cast<std::ptrdiff_t>(got));
}

std::optional<std::string> EfiVars::get_string(std::string_view name) const {
    const auto raw = get_raw(name, max_string_bytes);
    if (!raw) return std::nullopt;
    try {
        return utf16le_to_utf8(*raw, Terminator::required, max_string_bytes);
    } catch (const Error& e) {
        throw Error("EFI variable " + std::string(name) + " (" + file_of(name).string() +
                    "): invalid UTF-16: " + e.what());
    }
}

std::optional<std::string> EfiVars::get_loader_string(std::string_view name, std::string* quirk) const {
    auto raw = get_raw(name, max_string_bytes);
    if (!raw) return std::nullopt;
    const std::string shown = "EFI variable " + std::string(name) + " (" + file_of(name).string() + ")";
    if (raw->empty() || raw->size() % 2 != 0) {
        try {
            return utf16le_to_utf8(*raw, Terminator::required, max_string_bytes);  // throws with the cause
        } catch (const Error& e) {
            throw Error(shown + ": invalid UTF-16: " + e.what());
        }
    }
    std::size_t units = raw->size() / 2;
    const auto unit = [&](std::size_t k) { return (*raw)[2 * k] | (*raw)[2 * k + 1]; };
    std::string how;
    if (unit(units - 1) != 0) how = "not NUL-terminated: systemd-boot reads it without its last character";
    std::size_t end = 0;
    while (end < units - 1 && unit(end) != 0) ++end;
    if (end < units - 1 && how.empty()) how = "a NUL before its end: systemd-boot reads it up to there";
    raw->resize(2 * end);
    std::string value;
    try {
        value = utf16le_to_utf8(*raw, Terminator::forbidden, max_string_bytes);
    } catch (const Error& e) {
        throw Error(shown + ": invalid UTF-16: " + e.what());
    }
    if (quirk) *quirk = how.empty() ? std::string() : shown + ": " + how + ", as '" + value + "'";
    return value;
}

std::optional<std::uint64_t> EfiVars::get_u64(std::string_view name) const {
    const auto raw = get_raw(name, 64);
    if (!raw) return std::nullopt;
    if (raw->size() != 8)
        throw Error("EFI variable " + std::string(name) + " (" + file_of(name).string() +
                    "): expected 8 bytes, found " + std::to_string(raw->size()));
    std::uint64_t value = 0;
    for (int i = 7; i >= 0; --i) value = (value << 8) | (*raw)[static_cast<std::size_t>(i)];
    return value;
}

std::optional<std::vector<std::string>> EfiVars::get_string_list(std::string_view name) const {
    const auto raw = get_raw(name, 65536);
    if (!raw) return std::nullopt;
    try {
        return utf16le_list_to_utf8(*raw, 65536);
    } catch (const Error& e) {
        throw Error("EFI variable " + std::string(name) + " (" + file_of(name).string() +
                    "): invalid UTF-16: " + e.what());
    }
}

void EfiVars::set_string(std::string_view name, std::string_view value) {
    validate_name(name);
    const std::filesystem::path file = file_of(name);
    const std::string shown = "EFI variable " + std::string(name) + " (" + file.string() + ")";
    std::vector<std::uint8_t> data;
    try {
        data = utf8_to_utf16le(value, Terminator::required);
    } catch (const Error& e) {
        throw Error("writing " + shown + ": value is not valid UTF-8: " + e.what());
    }
    if (data.size() > max_string_bytes) throw Error("writing " + shown + ": value longer than 4096 bytes in UTF-16");
    make_mutable(file);
    crash_point("efivar-set", file.native());  // firmware writes a variable whole: never torn
    const CrashPointsPaused one_operation;
    const bool efivarfs = is_efivarfs(dir_);
    if (use_libefivar_) {
        // On a plain directory libefivar rewrites in place without truncating:
        // a shorter value would keep the old tail. Delete first there.
        const std::string cname(name);
        if (!efivarfs && efi_del_variable(loader_guid(), cname.c_str()) != 0 && errno != ENOENT)
            throw_errno("writing " + shown);
        if (efi_set_variable(loader_guid(), cname.c_str(), data.data(), data.size(), efi_default_attributes, 0644) != 0)
            throw_errno("writing " + shown);
        return;
    }
    std::string content(4 + data.size(), '\0');
    for (int i = 0; i < 4; ++i)
        content[static_cast<std::size_t>(i)] = static_cast<char>((efi_default_attributes >> (8 * i)) & 0xff);
    std::memcpy(content.data() + 4, data.data(), data.size());
    if (efivarfs) {
        // efivarfs wants the whole variable in one write(2); it has no rename.
        Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (!fd) throw_errno("writing " + shown);
        const ssize_t n = ::write(fd.get(), content.data(), content.size());
        if (n < 0) throw_errno("writing " + shown);
        if (static_cast<std::size_t>(n) != content.size()) throw Error("writing " + shown + ": short write");
        fd.close(file.c_str());
        return;
    }
    RootDir root = RootDir::open(dir_);
    try {
        root.write_atomic(file.filename().string(), content, Sync::yes);
    } catch (const Error& e) {
        rethrow_with_context(e, "writing " + shown);
    }
}

bool EfiVars::remove(std::string_view name) {
    validate_name(name);
    const std::filesystem::path file = file_of(name);
    const std::string shown = "EFI variable " + std::string(name) + " (" + file.string() + ")";
    make_mutable(file);
    if (::access(file.c_str(), F_OK) == 0) crash_point("efivar-delete", file.native());
    if (use_libefivar_) {
        if (efi_del_variable(loader_guid(), std::string(name).c_str()) == 0) return true;
        if (errno == ENOENT) return false;
        throw_errno("deleting " + shown);
    }
    if (::unlink(file.c_str()) == 0) return true;
    if (errno == ENOENT) return false;
    throw_errno("deleting " + shown);
}

Writable EfiVars::writable() const { return ::access(dir_.c_str(), W_OK) == 0 ? Writable::yes : Writable::no; }

}  // namespace nixboot
