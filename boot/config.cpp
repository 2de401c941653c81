#include "boot/config.hpp"

#include "boot/util/error.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nixboot {

std::string_view to_string(OnFailure f) { return f == OnFailure::reboot ? "reboot" : "stay"; }

const std::vector<std::string>& config_keys() {
    static const std::vector<std::string> keys = {"bootloader",      "esp",
                                                  "xbootldr",        "profile",
                                                  "efivars",         "state",
                                                  "tries",           "keep",
                                                  "checks-dir",      "check-timeout",
                                                  "verdict-timeout", "on-failure",
                                                  "watchdog-device", "watchdog-timeout",
                                                  "confirm-timeout", "stability-window"};
    return keys;
}

namespace {

std::string_view trim(std::string_view s) {
    const auto* ws = " \t\r";
    auto b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    auto e = s.find_last_not_of(ws);
    return s.substr(b, e - b + 1);
}

unsigned parse_unsigned(std::string_view key, std::string_view value, std::string_view origin, unsigned max) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || ec != std::errc{} || p != value.data() + value.size())
        throw UsageError(std::string(origin) + ": " + std::string(key) + ": '" + std::string(value) +
                         "' is not a number");
    if (v > max)
        throw UsageError(std::string(origin) + ": " + std::string(key) + ": " + std::to_string(v) +
                         " is out of range (at most " + std::to_string(max) + ")");
    return v;
}

std::filesystem::path parse_path(std::string_view key, std::string_view value, std::string_view origin) {
    if (value.empty() || value.find('\0') != std::string_view::npos)
        throw UsageError(std::string(origin) + ": " + std::string(key) + ": empty path");
    return std::filesystem::path(std::string(value));
}

}  // namespace

void apply_config_value(Config& c, std::string_view key, std::string_view value, std::string_view origin) {
    auto bad = [&](const std::string& why) {
        throw UsageError(std::string(origin) + ": " + std::string(key) + ": " + why);
    };
    if (key == "bootloader") {
        if (value == "detect" || value == "auto") {
            c.bootloader.reset();
            return;
        }
        auto b = parse_bootloader(value);
        if (!b) bad("'" + std::string(value) + "' is not systemd-boot or grub");
        c.bootloader = b;
    } else if (key == "esp") {
        c.esp = parse_path(key, value, origin);
    } else if (key == "xbootldr") {
        if (value == "none")
            c.xbootldr.reset();
        else
            c.xbootldr = parse_path(key, value, origin);
    } else if (key == "profile") {
        c.profile = parse_path(key, value, origin);
    } else if (key == "efivars") {
        c.efivars = parse_path(key, value, origin);
    } else if (key == "state") {
        c.state = parse_path(key, value, origin);
    } else if (key == "tries") {
        c.tries = parse_unsigned(key, value, origin, 100);
        if (c.tries == 0) bad("must be at least 1");
    } else if (key == "keep") {
        c.keep = parse_unsigned(key, value, origin, 1000000);
    } else if (key == "checks-dir") {
        c.checks_dir = parse_path(key, value, origin);
    } else if (key == "check-timeout") {
        c.check_timeout = parse_unsigned(key, value, origin, 86400);
    } else if (key == "verdict-timeout") {
        c.verdict_timeout = parse_unsigned(key, value, origin, 86400);
    } else if (key == "on-failure") {
        if (value == "reboot")
            c.on_failure = OnFailure::reboot;
        else if (value == "stay")
            c.on_failure = OnFailure::stay;
        else
            bad("'" + std::string(value) + "' is not reboot or stay");
    } else if (key == "watchdog-device") {
        c.watchdog_device = parse_path(key, value, origin);
    } else if (key == "watchdog-timeout") {
        c.watchdog_timeout = parse_unsigned(key, value, origin, 86400);
    } else if (key == "confirm-timeout") {
        c.confirm_timeout = parse_unsigned(key, value, origin, 86400);
    } else if (key == "stability-window") {
        c.stability_window = parse_unsigned(key, value, origin, 86400);
    } else if (key.starts_with("grub-") && key.size() > 5) {
        c.extra[std::string(key)] = std::string(value);
    } else {
        throw UsageError(std::string(origin) + ": unknown key '" + std::string(key) + "'");
    }
}

IniFile parse_ini(std::string_view text, std::string_view origin, const IniSyntax& syntax) {
    constexpr std::size_t max_size = 64 * 1024;
    if (text.size() > max_size) throw UsageError(std::string(origin) + ": file is larger than 64 KiB");
    IniFile out;
    const std::string_view prefix = syntax.section_prefix;
    std::optional<std::string> section;  // nullopt at top level
    unsigned lineno = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        auto raw = text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        ++lineno;
        auto where = [&] { return std::string(origin) + ":" + std::to_string(lineno) + ": "; };
        if (raw.find('\0') != std::string_view::npos) throw UsageError(where() + "NUL byte");
        auto line = trim(raw);
        if (line.empty() || line[0] == '#' || line[0] == ';') continue;
        if (line[0] == '[') {
            if (line.back() != ']') throw UsageError(where() + "section header without ']'");
            auto name = trim(line.substr(1, line.size() - 2));
            if (prefix.empty() || !name.starts_with(prefix) || name.size() == prefix.size())
                throw UsageError(where() + "unknown section '[" + std::string(name) + "]'");
            section = std::string(name.substr(prefix.size()));
            out.sections[*section];  // an empty section still names its subject
            continue;
        }
        auto eq = line.find('=');
        if (eq == std::string_view::npos)
            throw UsageError(where() + "expected 'key = value', got '" + std::string(line) + "'");
        auto key = trim(line.substr(0, eq));
        auto value = trim(line.substr(eq + 1));
        if (key.empty()) throw UsageError(where() + "empty key");
        if (value.size() >= 2 &&
            ((value.front() == '"' && value.back() == '"') || (value.front() == '\'' && value.back() == '\'')))
            value = value.substr(1, value.size() - 2);
        if (section) {
            out.sections[*section][std::string(key)] = std::string(value);
            continue;
        }
        if (!syntax.known_key(key)) throw UsageError(where() + "unknown key '" + std::string(key) + "'");
        out.settings.push_back({std::string(key), std::string(value), lineno});
    }
    return out;
}

ConfigFile parse_config_file(std::string_view text, std::string_view origin) {
    const auto& keys = config_keys();
    IniSyntax syntax{[&](std::string_view key) {
                         return std::find(keys.begin(), keys.end(), key) != keys.end() ||
                                (key.starts_with("grub-") && key.size() > 5);
                     },
                     "check."};
    auto ini = parse_ini(text, origin, syntax);  // [check.NAME] belongs to the checks runner, which validates it
    return ConfigFile{std::move(ini.settings), std::move(ini.sections)};
}

void apply_config_file(Config& config, const ConfigFile& file, std::string_view origin,
                       const std::vector<std::string>& overridden) {
    for (const auto& s : file.settings) {
        if (std::find(overridden.begin(), overridden.end(), s.key) != overridden.end()) continue;
        apply_config_value(config, s.key, s.value, std::string(origin) + ":" + std::to_string(s.line));
    }
    for (const auto& [name, kv] : file.checks)
        for (const auto& [k, v] : kv) config.checks[name][k] = v;
}

std::optional<std::string> read_config_text(const std::filesystem::path& path, Required required) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int err = errno;
        if (err == ENOENT && required == Required::no) return std::nullopt;
        throw UsageError("config file '" + path.string() + "': " + std::strerror(err));
    }
    std::string text;
    char buf[4096];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, static_cast<std::size_t>(in.gcount()));
        if (text.size() > 64 * 1024) throw UsageError(path.string() + ": file is larger than 64 KiB");
    }
    if (in.bad()) throw UsageError("config file '" + path.string() + "': read error");
    return text;
}

std::optional<ConfigFile> read_config_file(const std::filesystem::path& path, Required required) {
    auto text = read_config_text(path, required);
    if (!text) return std::nullopt;
    return parse_config_file(*text, path.string());
}

}  // namespace nixboot
