// Running the outside programs the health code drives (systemd-run,
// switch-to-configuration, the reboot command), without a shell.
#pragma once

#include <string>
#include <vector>

namespace nixboot::health {

// Runs argv (argv[0] looked up in PATH), inheriting stdio, and waits.
// Returns the exit status, or 128+N when signal N ended it. Throws SysError
// "running 'PROG': REASON" when it cannot be started.
int run_command(const std::vector<std::string>& argv);

// `fallback`, or {VALUE} when the environment variable `var` is set and not
// empty (tests point these at scripts that record their calls).
std::vector<std::string> command_from_env(const char* var, std::vector<std::string> fallback);

// `argv` with argv[0] replaced by the value of environment variable `var`
// when it is set and not empty (a stand-in program taking the same arguments).
std::vector<std::string> program_from_env(const char* var, std::vector<std::string> argv);

// "systemd-run --on-active=30 ..." for messages.
std::string join_command(const std::vector<std::string>& argv);

}  // namespace nixboot::health
