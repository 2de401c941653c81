#include "boot/deploy/ssh.hpp"

#include "boot/health/checks.hpp"
#include "boot/util/error.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace nixboot::deploy {

namespace {

std::vector<std::string> split(std::string_view text, std::string_view separators) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto start = text.find_first_not_of(separators, pos);
        if (start == std::string_view::npos) break;
        auto end = text.find_first_of(separators, start);
        if (end == std::string_view::npos) end = text.size();
        out.emplace_back(text.substr(start, end - start));
        pos = end;
    }
    return out;
}

std::string remote_command(const std::vector<std::string>& args) {
    std::string out = "nixboot";
    for (const auto& a : args) out += " " + shell_quote(a);
    return out;
}

// One line for a step that failed: nixboot's own error line ("nixboot:
// ..."; stdout and stderr arrive over separate channels, in no fixed order),
// else ssh's last line, else how it ended.
std::string failure_detail(const health::CheckResult& r, const std::vector<std::string>& lines) {
    if (r.outcome == health::CheckOutcome::timed_out) return "no answer: ssh " + r.detail;
    if (r.outcome == health::CheckOutcome::not_started) return r.detail;
    for (auto it = lines.rbegin(); it != lines.rend(); ++it)
        if (it->starts_with("nixboot: ")) return *it;
    for (auto it = lines.rbegin(); it != lines.rend(); ++it)
        if (!it->empty()) return *it;
    return "ssh " + r.detail;
}

}  // namespace

std::vector<std::string> split_words(std::string_view text) { return split(text, " \t\n"); }

std::filesystem::path ssh_program() {
    if (const char* env = std::getenv("NIXBOOT_SSH_PROGRAM"); env && *env) return env;
    const char* path = std::getenv("PATH");
    for (const auto& dir : split(path ? path : "/usr/bin:/bin", ":")) {
        auto candidate = std::filesystem::path(dir) / "ssh";
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    throw Error("no 'ssh' in PATH (install the OpenSSH client, or set NIXBOOT_SSH_PROGRAM)");
}

std::vector<std::string> ssh_prefix(const SshOptions& ssh) {
    std::vector<std::string> out{ssh.program.string(),
                                 "-o",
                                 "ControlPath=none",
                                 "-o",
                                 "ControlMaster=no",
                                 "-o",
                                 "BatchMode=yes",
                                 "-o",
                                 "ConnectTimeout=" + std::to_string(ssh.connect_timeout)};
    out.insert(out.end(), ssh.user_options.begin(), ssh.user_options.end());
    return out;
}

std::string shell_quote(std::string_view word) {
    const bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               std::string_view("-_./=:,@%+").find(c) != std::string_view::npos;
    });
    if (plain) return std::string(word);
    std::string out = "'";
    for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

std::string host_name(std::string_view target) {
    auto at = target.rfind('@');
    return std::string(at == std::string_view::npos ? target : target.substr(at + 1));
}

void validate_host(std::string_view host) {
    if (host.empty()) throw UsageError("an empty host name");
    if (host.front() == '-')
        throw UsageError("host '" + std::string(host) + "': starts with '-' (ssh would read an option)");
    for (char c : host)
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
            throw UsageError("host '" + std::string(host) + "': holds whitespace or a control character");
}

std::optional<std::string> RemoteResult::json_line() const {
    for (auto it = lines.rbegin(); it != lines.rend(); ++it)
        if (it->starts_with("{")) return *it;
    return std::nullopt;
}

RemoteResult run_remote_nixboot(const SshOptions& ssh, const std::string& host, const std::vector<std::string>& args,
                                std::chrono::milliseconds timeout) {
    auto argv = ssh_prefix(ssh);
    argv.push_back(host);
    argv.push_back(remote_command(args));
    health::CheckSpec spec;
    spec.name = "ssh";
    spec.path = argv.front();
    spec.args.assign(argv.begin() + 1, argv.end());
    spec.timeout = timeout;
    spec.max_line_bytes = 1024 * 1024;  // status --json is one line
    RemoteResult out;
    auto results = health::run_checks({spec}, [&](std::string_view line) {
        line.remove_prefix(spec.name.size() + 2);  // "ssh: "
        while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (out.lines.size() < 10000) out.lines.emplace_back(line);
    });
    const auto& r = results.front();
    out.exit_status = r.exit_code.value_or(-1);
    out.timed_out = r.outcome == health::CheckOutcome::timed_out;
    if (!out.ok()) out.detail = failure_detail(r, out.lines);
    return out;
}

}  // namespace nixboot::deploy
