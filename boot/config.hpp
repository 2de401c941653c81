// nixboot's settings: the ini file (--config, default /etc/nixboot/nixboot.conf)
// and the command line share one set of keys, the long option names
// (docs/contracts.md). Parsing is pure; the command line wins over the file.
#pragma once

#include "boot/backend.hpp"

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

enum class OnFailure { reboot, stay };
std::string_view to_string(OnFailure f);

struct Config {
    std::optional<Bootloader> bootloader;  // nullopt: detect
    std::filesystem::path esp = "/boot";
    std::optional<std::filesystem::path> xbootldr;  // systemd-boot's XBOOTLDR partition; nullopt: none
    std::filesystem::path profile = "/nix/var/nix/profiles/system";
    std::filesystem::path efivars = "/sys/firmware/efi/efivars";
    std::filesystem::path state = "/var/lib/nixboot";
    unsigned tries = 1;
    unsigned keep = 0;
    std::filesystem::path checks_dir = "/etc/nixboot/checks.d";
    unsigned check_timeout = 60;
    unsigned verdict_timeout = 600;
    OnFailure on_failure = OnFailure::reboot;
    std::filesystem::path watchdog_device = "/dev/watchdog";
    unsigned watchdog_timeout = 120;
    unsigned confirm_timeout = 300;
    unsigned stability_window = 0;  // seconds; 0 = off (boot/health/stability.hpp)
    // [check.NAME] sections: NAME -> key -> value (read by the checks runner).
    std::map<std::string, std::map<std::string, std::string>> checks;
    // Backend-specific keys ("grub-*"), passed to the backend untouched.
    std::map<std::string, std::string> extra;
};

// The keys a config file may set at top level (besides "grub-*").
const std::vector<std::string>& config_keys();

// Sets `key` to `value` in `config`. Throws UsageError "ORIGIN: REASON"
// ("ORIGIN: unknown key 'x'", "ORIGIN: tries: 'abc' is not a number") where
// ORIGIN names the file and line or the command-line option.
void apply_config_value(Config& config, std::string_view key, std::string_view value, std::string_view origin);

// One "key = value" line of a config file, before it is applied.
struct ConfigSetting {
    std::string key;
    std::string value;
    unsigned line = 0;
};
struct ConfigFile {
    std::vector<ConfigSetting> settings;                               // top-level keys, in file order
    std::map<std::string, std::map<std::string, std::string>> checks;  // [check.NAME]
};

// The ini syntax shared by nixboot.conf and the deployer's fleet file: which
// top-level keys it knows and which sections it allows ([PREFIXNAME]).
struct IniSyntax {
    std::function<bool(std::string_view key)> known_key;
    std::string section_prefix;  // "check.": [check.NAME]
};
struct IniFile {
    std::vector<ConfigSetting> settings;                                 // top-level keys, in file order
    std::map<std::string, std::map<std::string, std::string>> sections;  // NAME -> key -> value
};
// Pure: "key = value" lines, '#' or ';' comments, blank lines, quotes around a
// value dropped, [PREFIXNAME] sections (their keys unchecked: their reader
// validates them). Throws UsageError "ORIGIN:LINE: REASON" for an unknown key
// or section, a line without '=', or a text over 64 KiB.
IniFile parse_ini(std::string_view text, std::string_view origin, const IniSyntax& syntax);

// Reads a config file of at most 64 KiB. Missing file: nullopt when
// `required` is no, UsageError "config file 'PATH': No such file or
// directory" otherwise.
enum class Required { no, yes };
std::optional<std::string> read_config_text(const std::filesystem::path& path, Required required);

// Pure ini parser: "key = value" lines, '#' or ';' comments, blank lines,
// [check.NAME] sections. Throws UsageError "ORIGIN:LINE: REASON" for an
// unknown key or section, a line without '=', or a file over 64 KiB.
ConfigFile parse_config_file(std::string_view text, std::string_view origin);

// Applies every setting of `file` whose key is not in `overridden` (keys
// given on the command line), then its [check.*] sections.
void apply_config_file(Config& config, const ConfigFile& file, std::string_view origin,
                       const std::vector<std::string>& overridden = {});

// Reads and parses `path` (read_config_text, parse_config_file).
std::optional<ConfigFile> read_config_file(const std::filesystem::path& path, Required required);

}  // namespace nixboot
