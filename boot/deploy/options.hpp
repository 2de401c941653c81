// The deployer's settings: the fleet file (`deploy --config FILE`, ini like
// nixboot.conf, boot/config's parser) and the command line share one set of
// keys, the long option names; the command line wins.
#pragma once

#include "boot/config.hpp"
#include "boot/deploy/ssh.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::deploy {

enum class TrialMode { reboot, live };

struct DeployOptions {
    std::vector<std::string> hosts;      // ssh destinations: HOST or USER@HOST
    std::optional<std::string> push;     // shell command run first, "{host}" replaced
    std::optional<unsigned> generation;  // else the newest untried one
    TrialMode mode = TrialMode::reboot;
    unsigned confirm_timeout = 300;   // the target's window for our confirm
    std::vector<std::string> checks;  // "PATH [ARGS...]": a file, or a directory of them
    unsigned check_timeout = 60;
    SshOptions ssh;
    unsigned boot_timeout = 600;     // from arming until the trial waits for the confirm
    unsigned settle_timeout = 600;   // from confirm/revert until the outcome shows
    unsigned command_timeout = 120;  // one ssh step
    unsigned push_timeout = 3600;
    std::chrono::milliseconds poll_interval{5000};
    unsigned parallel = 1;
};

// The keys of the fleet file ("check" may repeat and adds a check).
const std::vector<std::string>& deploy_keys();

// Sets `key` to `value`. Throws UsageError "ORIGIN: KEY: REASON" (ORIGIN names
// the file and line, or the option).
void apply_deploy_value(DeployOptions& options, std::string_view key, std::string_view value, std::string_view origin);

// Parses a fleet file (no sections). Throws UsageError "ORIGIN:LINE: REASON".
IniFile parse_deploy_file(std::string_view text, std::string_view origin);

// Applies every setting of `file` whose key is not in `overridden`.
void apply_deploy_file(DeployOptions& options, const IniFile& file, std::string_view origin,
                       const std::vector<std::string>& overridden);

// The hosts to deploy: `requested` (the command line) when given, each of
// which must be in `configured` when that is not empty; else `configured`.
// Throws UsageError "host 'x' is not in ORIGIN (hosts: a b)", "no host given".
std::vector<std::string> select_hosts(const std::vector<std::string>& configured,
                                      const std::vector<std::string>& requested, std::string_view origin);

}  // namespace nixboot::deploy
