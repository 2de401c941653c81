#include "boot/deploy/options.hpp"

#include "boot/util/error.hpp"

#include <algorithm>
#include <charconv>

namespace nixboot::deploy {

const std::vector<std::string>& deploy_keys() {
    static const std::vector<std::string> keys = {
        "hosts",         "push",          "generation",      "mode",         "confirm-timeout", "check",
        "check-timeout", "ssh-options",   "connect-timeout", "boot-timeout", "settle-timeout",  "command-timeout",
        "push-timeout",  "poll-interval", "parallel"};
    return keys;
}

namespace {

[[noreturn]] void bad(std::string_view origin, std::string_view key, const std::string& why) {
    // "--parallel: 'x' is ..." on the command line, "FILE:3: parallel: 'x' is ..." from the file
    const bool option = origin == "--" + std::string(key);
    throw UsageError(std::string(origin) + ": " + (option ? "" : std::string(key) + ": ") + why);
}

unsigned number(std::string_view origin, std::string_view key, std::string_view value, unsigned min, unsigned max) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || ec != std::errc{} || p != value.data() + value.size() || v < min || v > max)
        bad(origin, key,
            "'" + std::string(value) + "' is not a number from " + std::to_string(min) + " to " + std::to_string(max));
    return v;
}

// "5", "0.2", "1.25" seconds -> milliseconds (0.05 s to 1 hour).
std::chrono::milliseconds seconds_ms(std::string_view origin, std::string_view key, std::string_view value) {
    auto dot = value.find('.');
    auto whole = value.substr(0, dot);
    auto fraction = dot == std::string_view::npos ? std::string_view{} : value.substr(dot + 1);
    unsigned ms = 0;
    bool ok = !whole.empty() && fraction.size() <= 3 && (dot == std::string_view::npos || !fraction.empty());
    for (char c : whole) ok = ok && c >= '0' && c <= '9';
    for (char c : fraction) ok = ok && c >= '0' && c <= '9';
    if (ok && whole.size() <= 4) {
        ms = static_cast<unsigned>(std::stoul(std::string(whole))) * 1000;
        std::string f(fraction);
        f.resize(3, '0');
        ms += static_cast<unsigned>(std::stoul(f));
    }
    if (!ok || whole.size() > 4 || ms < 50 || ms > 3600 * 1000)
        bad(origin, key, "'" + std::string(value) + "' is not a number of seconds from 0.05 to 3600");
    return std::chrono::milliseconds(ms);
}

}  // namespace

void apply_deploy_value(DeployOptions& o, std::string_view key, std::string_view value, std::string_view origin) {
    constexpr unsigned day = 86400;
    if (key == "hosts") {
        o.hosts = split_words(value);
        for (const auto& h : o.hosts) validate_host(h);
    } else if (key == "push") {
        if (value.empty()) bad(origin, key, "empty command");
        o.push = std::string(value);
    } else if (key == "generation") {
        o.generation = number(origin, key, value, 1, 999999);
    } else if (key == "mode") {
        if (value != "reboot" && value != "live")
            bad(origin, key, "'" + std::string(value) + "' is not reboot or live");
        o.mode = value == "live" ? TrialMode::live : TrialMode::reboot;
    } else if (key == "confirm-timeout") {
        o.confirm_timeout = number(origin, key, value, 1, day);
    } else if (key == "check") {
        if (split_words(value).empty()) bad(origin, key, "empty path");
        o.checks.emplace_back(value);
    } else if (key == "check-timeout") {
        o.check_timeout = number(origin, key, value, 1, day);
    } else if (key == "ssh-options") {
        o.ssh.user_options = split_words(value);
    } else if (key == "connect-timeout") {
        o.ssh.connect_timeout = number(origin, key, value, 1, 3600);
    } else if (key == "boot-timeout") {
        o.boot_timeout = number(origin, key, value, 1, day);
    } else if (key == "settle-timeout") {
        o.settle_timeout = number(origin, key, value, 1, day);
    } else if (key == "command-timeout") {
        o.command_timeout = number(origin, key, value, 1, day);
    } else if (key == "push-timeout") {
        o.push_timeout = number(origin, key, value, 1, day);
    } else if (key == "poll-interval") {
        o.poll_interval = seconds_ms(origin, key, value);
    } else if (key == "parallel") {
        o.parallel = number(origin, key, value, 1, 1000);
    } else {
        throw UsageError(std::string(origin) + ": unknown key '" + std::string(key) + "'");
    }
}

IniFile parse_deploy_file(std::string_view text, std::string_view origin) {
    const auto& keys = deploy_keys();
    IniSyntax syntax{[&](std::string_view key) { return std::find(keys.begin(), keys.end(), key) != keys.end(); }, ""};
    return parse_ini(text, origin, syntax);
}

void apply_deploy_file(DeployOptions& options, const IniFile& file, std::string_view origin,
                       const std::vector<std::string>& overridden) {
    for (const auto& s : file.settings) {
        if (std::find(overridden.begin(), overridden.end(), s.key) != overridden.end()) continue;
        apply_deploy_value(options, s.key, s.value, std::string(origin) + ":" + std::to_string(s.line));
    }
}

std::vector<std::string> select_hosts(const std::vector<std::string>& configured,
                                      const std::vector<std::string>& requested, std::string_view origin) {
    if (requested.empty()) {
        if (configured.empty()) throw UsageError("no host given (HOST... or 'hosts =' in a --config file)");
        return configured;
    }
    for (const auto& host : requested) {
        validate_host(host);
        if (configured.empty() || std::find(configured.begin(), configured.end(), host) != configured.end()) continue;
        std::string list;
        for (const auto& c : configured) list += (list.empty() ? "" : " ") + c;
        throw UsageError("host '" + host + "' is not in " + std::string(origin) + " (hosts: " + list + ")");
    }
    return requested;
}

}  // namespace nixboot::deploy
