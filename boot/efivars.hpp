// The Boot Loader Interface EFI variables, through libefivar, against any
// directory laid out like efivarfs (files "Name-GUID": 4-byte attributes + data).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

inline constexpr const char* loader_vendor_guid = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

namespace efivar_name {
inline constexpr const char* loader_info = "LoaderInfo";
inline constexpr const char* loader_features = "LoaderFeatures";
inline constexpr const char* loader_boot_count_path = "LoaderBootCountPath";
inline constexpr const char* loader_entry_selected = "LoaderEntrySelected";
inline constexpr const char* loader_entries = "LoaderEntries";
inline constexpr const char* loader_entry_oneshot = "LoaderEntryOneShot";
inline constexpr const char* loader_entry_default = "LoaderEntryDefault";
inline constexpr const char* loader_entry_preferred = "LoaderEntryPreferred";     // systemd-boot 260+
inline constexpr const char* loader_entry_last_booted = "LoaderEntryLastBooted";  // written with "@saved"
}  // namespace efivar_name

// LoaderFeatures bits (systemd's EFI_LOADER_FEATURE_*).
namespace loader_feature {
inline constexpr std::uint64_t config_timeout = 1ull << 0;
inline constexpr std::uint64_t config_timeout_oneshot = 1ull << 1;
inline constexpr std::uint64_t entry_default = 1ull << 2;
inline constexpr std::uint64_t entry_oneshot = 1ull << 3;
inline constexpr std::uint64_t boot_counting = 1ull << 4;
inline constexpr std::uint64_t xbootldr = 1ull << 5;
inline constexpr std::uint64_t random_seed = 1ull << 6;
inline constexpr std::uint64_t sort_key = 1ull << 8;
inline constexpr std::uint64_t saved_entry = 1ull << 9;
inline constexpr std::uint64_t preferred = 1ull << 19;
}  // namespace loader_feature

// Attributes systemd writes: NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
inline constexpr std::uint32_t efi_default_attributes = 0x7;

enum class Writable { no, yes };

// All variables are in the loader vendor GUID. Reads are untrusted: strings
// are decoded strictly; errors read "EFI variable LoaderInfo
// (DIR/LoaderInfo-4a67...): invalid UTF-16: odd length (5 bytes)".
// libefivar reads EFIVARFS_PATH once, when the process loads it, and serves
// that one directory for the life of the process (Debian's libefivar 37;
// setenv later has no effect). EfiVars uses libefivar when `dir` is that
// directory (production: /sys/firmware/efi/efivars, or EFIVARFS_PATH set
// before the process starts) and reads/writes the same file format itself
// for any other directory (tests, --efivars elsewhere).
class EfiVars {
public:
    explicit EfiVars(std::filesystem::path dir);
    const std::filesystem::path& dir() const noexcept { return dir_; }

    // Raw data; nullopt if the variable does not exist. Bounded to max_bytes.
    std::optional<std::vector<std::uint8_t>> get_raw(std::string_view name, std::size_t max_bytes = 65536) const;
    // UTF-16LE string with NUL terminator, at most 4 KiB; nullopt if absent.
    std::optional<std::string> get_string(std::string_view name) const;
    // A string variable the way systemd-boot reads it (the variables
    // userspace writes and the loader obeys: LoaderEntryDefault,
    // LoaderEntryOneShot). Follows systemd v252-v262 src/boot/efi
    // efivar_get/efivar_get_str16: a value that does not end in a NUL code
    // unit gets one written over its last code unit, and the string ends at
    // its first NUL. Where the loader's reading differs from a well-formed
    // value, `*quirk` says how ("not NUL-terminated: systemd-boot reads it
    // without its last character"). Odd lengths and invalid UTF-16 still
    // throw, as in get_string.
    std::optional<std::string> get_loader_string(std::string_view name, std::string* quirk) const;
    // 8-byte little-endian value (LoaderFeatures); nullopt if absent.
    std::optional<std::uint64_t> get_u64(std::string_view name) const;
    // NUL-separated UTF-16LE strings (LoaderEntries); nullopt if absent.
    std::optional<std::vector<std::string>> get_string_list(std::string_view name) const;

    // Writes `value` as UTF-16LE + NUL with attributes 0x7, clearing the
    // immutable flag of an existing file first (real efivarfs).
    void set_string(std::string_view name, std::string_view value);
    // Deletes the variable; false if it did not exist.
    bool remove(std::string_view name);
    // True if the directory accepts variable writes (probes by access(W_OK)
    // on the directory; efivarfs mounted read-only says no).
    Writable writable() const;

    // Path of the backing file, for messages: DIR/Name-GUID.
    std::filesystem::path file_of(std::string_view name) const;
    // True if this instance goes through libefivar (see above).
    bool uses_libefivar() const noexcept { return use_libefivar_; }

private:
    std::filesystem::path dir_;
    bool use_libefivar_ = false;
};

}  // namespace nixboot
