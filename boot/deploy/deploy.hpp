// `nixboot deploy`, the deployer's side of a trial that waits for a confirm
// (docs/deploy.md): per target, push, arm, wait until the trial waits, run
// the deployer's checks, confirm or revert, and report what the target then
// says. Every remote step is a new ssh connection with a timeout; a target
// that stops answering is left alone: it returns to its last good generation
// by itself (G6). The library prints nothing: progress and results go to
// callbacks.
#pragma once

#include "boot/deploy/options.hpp"
#include "boot/deploy/ssh.hpp"
#include "boot/health/checks.hpp"

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace nixboot::deploy {

enum class Outcome {
    promoted,      // the target shows the generation good and the default
    rolled_back,   // the target shows it bad / rolled back
    unreachable,   // no answer (before arming: nothing armed; after: not confirmed)
    not_deployed,  // refused before anything was armed (push failed, nothing new, arm refused)
    unknown,       // armed, then no answer that says how it ended
};
const char* to_string(Outcome outcome) noexcept;  // "promoted", "rolled back", ...

struct TargetReport {
    std::string host;
    std::optional<unsigned> generation;
    std::optional<unsigned> previous;  // the default before the deploy; after a rollback, where it went
    std::string trial_id;
    Outcome outcome = Outcome::unknown;
    std::string detail;  // the reason, one line
};

// "web1: generation 42 promoted", "web1: rolled back to 41: REASON", ...
std::string report_line(const TargetReport& report);

// Receives one progress line for a host (from any thread; the receiver
// serializes).
using Progress = std::function<void(const std::string& host, const std::string& line)>;

// The deployer's checks: each "PATH [ARGS]" of `checks` a file, or a
// directory whose executable files (sorted, dot files skipped) each are one.
// Throws UsageError for a missing path or a file refused as a check
// (health::refusal_reason).
std::vector<health::CheckSpec> resolve_checks(const std::vector<std::string>& checks, unsigned timeout);

// How a deploy reaches a target: runs `nixboot ARGS...` on HOST, for at most
// TIMEOUT, and says what came back. ssh_transport is the real one (a new
// ssh connection each call); the state machine's tests give a scripted one.
using Transport = std::function<RemoteResult(const std::string& host, const std::vector<std::string>& args,
                                             std::chrono::milliseconds timeout)>;
Transport ssh_transport(const SshOptions& ssh);

// One target, all steps, through `transport` (ssh_transport(options.ssh)
// when empty). Never throws for what the target does.
TargetReport deploy_target(const DeployOptions& options, const std::vector<health::CheckSpec>& checks,
                           const std::string& host, const Progress& progress, const Transport& transport = {});

// Every host of `options`, at most `parallel` at a time; `done` is called as
// each finishes (from its thread). Returns the reports in host order.
std::vector<TargetReport> deploy_all(const DeployOptions& options, const std::vector<health::CheckSpec>& checks,
                                     const Progress& progress, const std::function<void(const TargetReport&)>& done);

}  // namespace nixboot::deploy
