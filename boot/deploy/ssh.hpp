// Talking to one target: every step is a NEW ssh connection (never a
// multiplexed master, which would outlive a broken sshd or network and
// confirm a machine nobody can reach), run with health::run_checks so each
// has a timeout and its output captured.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::deploy {

struct SshOptions {
    std::filesystem::path program;          // absolute; see ssh_program()
    std::vector<std::string> user_options;  // from --ssh-options, words
    unsigned connect_timeout = 10;          // seconds, ssh -o ConnectTimeout
};

// $NIXBOOT_SSH_PROGRAM when set (tests), else `ssh` found in PATH. Throws
// Error when there is none.
std::filesystem::path ssh_program();

// "-p 2222 -i key" -> {"-p", "2222", "-i", "key"} (whitespace-separated words;
// no quoting).
std::vector<std::string> split_words(std::string_view text);

// ssh -o ControlPath=none -o ControlMaster=no -o BatchMode=yes
//     -o ConnectTimeout=N USER-OPTIONS  (the host and command follow)
std::vector<std::string> ssh_prefix(const SshOptions& ssh);

// `word` quoted for a POSIX shell where it needs it: abc -> abc, a b -> 'a b'.
std::string shell_quote(std::string_view word);

// The user@ part dropped: "root@web1" -> "web1".
std::string host_name(std::string_view target);

// Throws UsageError "HOST: ..." for a host ssh would take as an option or
// that holds whitespace or control characters.
void validate_host(std::string_view host);

struct RemoteResult {
    int exit_status = -1;  // ssh's (255: it could not connect or the connection broke)
    bool timed_out = false;
    std::vector<std::string> lines;  // stdout and stderr, in order
    std::string detail;              // one line saying what went wrong, "" on exit 0

    bool ok() const { return exit_status == 0 && !timed_out; }
    // The last line that is a JSON object ('{'...), or nullopt.
    std::optional<std::string> json_line() const;
};

// Runs `nixboot ARGS...` on `host` over a new connection, for at most `timeout`.
RemoteResult run_remote_nixboot(const SshOptions& ssh, const std::string& host, const std::vector<std::string>& args,
                                std::chrono::milliseconds timeout);

}  // namespace nixboot::deploy
