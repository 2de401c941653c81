// Starting other programs: one way for every caller (the GRUB tools,
// bootctl, systemd-run, switch-to-configuration, the reboot command, the
// health checks, ssh). posix_spawn, argv only (no shell), the signal mask
// and the handlers of SIGPIPE, SIGTERM and SIGINT reset in the child.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

namespace nixboot {

struct SpawnOptions {
    int stdout_fd = -1;                  // -1: inherited
    int stderr_fd = -1;                  // -1: inherited
    bool stdin_null = false;             // stdin from /dev/null instead of inherited
    bool own_process_group = false;      // the child leads a process group (killed as one)
    bool search_path = true;             // argv[0] without '/' is looked up in PATH
    std::vector<std::string> extra_env;  // "NAME=VALUE", replacing an inherited NAME
};

// Starts argv and returns its pid. Throws SysError "running 'PROG': REASON"
// when it cannot be started (ENOENT for a program that is not there).
pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Waits for `pid` (EINTR retried): its exit status, or 128+N when signal N
// ended it. Throws SysError "waiting for 'NAME': REASON".
int wait_process(pid_t pid, const std::string& name);

// Runs argv with stdio inherited and waits: the status as wait_process.
int run_command(const std::vector<std::string>& argv);

struct ProcessResult {
    int exit_status = -1;  // as wait_process: 128+N for signal N
    std::string out;       // stdout, at most 1 MiB kept
    std::string err;       // stderr, at most 1 MiB kept
};

// Runs argv with stdin from /dev/null, capturing stdout and stderr.
ProcessResult run_process(const std::vector<std::string>& argv);

// The inherited environment with `extra` ("NAME=VALUE") added; an inherited
// variable of the same name is dropped.
std::vector<std::string> environment_with(const std::vector<std::string>& extra);

// `fallback`, or {VALUE} when the environment variable `var` is set and not
// empty (tests point these at scripts that record their calls).
std::vector<std::string> command_from_env(const char* var, std::vector<std::string> fallback);

// `argv` with argv[0] replaced by the value of environment variable `var`
// when it is set and not empty (a stand-in program taking the same arguments).
std::vector<std::string> program_from_env(const char* var, std::vector<std::string> argv);

// "systemd-run --on-active=30 ..." for messages.
std::string join_command(const std::vector<std::string>& argv);

// The first line of `text` without its newline ("" for empty text).
std::string first_line(const std::string& text);

}  // namespace nixboot
