#include "boot/deploy/deploy.hpp"

#include "boot/deploy/target_status.hpp"
#include "boot/util/error.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

namespace nixboot::deploy {

const char* to_string(Outcome outcome) noexcept {
    switch (outcome) {
        case Outcome::promoted: return "promoted";
        case Outcome::rolled_back: return "rolled back";
        case Outcome::unreachable: return "unreachable";
        case Outcome::not_deployed: return "not deployed";
        case Outcome::unknown: break;
    }
    return "unknown";
}

std::string report_line(const TargetReport& r) {
    const std::string gen = r.generation ? "generation " + std::to_string(*r.generation) : "";
    const std::string prev = r.previous ? std::to_string(*r.previous) : "its last good generation";
    switch (r.outcome) {
        case Outcome::promoted: return r.host + ": " + gen + " promoted";
        case Outcome::rolled_back: return r.host + ": rolled back to " + prev + ": " + r.detail;
        case Outcome::unreachable:
            if (r.trial_id.empty()) return r.host + ": unreachable, nothing deployed: " + r.detail;
            return r.host + ": " + gen + " not confirmed: " + r.detail + "; it returns to " + prev + " by itself";
        case Outcome::not_deployed: return r.host + ": not deployed: " + r.detail;
        case Outcome::unknown: break;
    }
    return r.host + ": " + gen + ": outcome unknown: " + r.detail;
}

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

long elapsed_s(Clock::time_point since) {
    return static_cast<long>(std::chrono::duration_cast<seconds>(Clock::now() - since).count());
}

// One deploy of one host: the steps in order, each a short method.
class TargetDeploy {
public:
    TargetDeploy(const DeployOptions& o, const std::vector<health::CheckSpec>& c, const std::string& host,
                 const Progress& p, const Transport& t)
        : opts_(o), checks_(c), progress_(p), remote_(t) {
        report_.host = host;
    }

    TargetReport run() {
        if (opts_.push && !push()) return report_;
        auto first = read_status();
        if (!first) return finish(Outcome::unreachable, last_error_);
        if (!pick(*first) || !arm()) return report_;
        auto seen = wait_until(Seen::awaiting_confirm, seconds(opts_.boot_timeout), "the trial to pass its checks");
        if (seen == Seen::awaiting_confirm) {
            if (auto failure = run_checks()) {
                revert(*failure);
            } else {
                confirm();
            }
        } else if (seen == Seen::pending) {
            progress("the trial did not wait for the confirm within " + std::to_string(opts_.boot_timeout) +
                     " s: not confirming" + (answering_ ? "" : " (no answer: " + last_error_ + ")"));
        }
        return settle();
    }

private:
    const DeployOptions& opts_;
    const std::vector<health::CheckSpec>& checks_;
    const Progress& progress_;
    const Transport& remote_;
    TargetReport report_;
    std::string last_error_;                        // the last failed step, one line
    Clock::time_point last_answer_ = Clock::now();  // or when the deploy started
    bool answering_ = true;                         // the last status read got an answer
    bool verdict_sent_ = false;                     // confirm or live-revert was sent
    Clock::time_point window_seen_{};

    void progress(const std::string& line) const {
        if (progress_) progress_(report_.host, line);
    }
    TargetReport finish(Outcome outcome, std::string detail) {
        report_.outcome = outcome;
        report_.detail = std::move(detail);
        return report_;
    }

    bool push() {
        std::string command = *opts_.push;
        for (auto p = command.find("{host}"); p != std::string::npos;
             p = command.find("{host}", p + report_.host.size()))
            command.replace(p, 6, report_.host);
        progress("push: " + command);
        health::CheckSpec spec{
            "push", health::CheckKind::required,   "/bin/sh", {"-c", command}, seconds(opts_.push_timeout),
            {},     health::default_max_line_bytes};
        auto result = health::run_checks({spec}, [&](std::string_view line) { progress(std::string(line)); });
        if (result.front().outcome == health::CheckOutcome::passed) return true;
        finish(Outcome::not_deployed, "push command failed (" + result.front().detail + ")");
        return false;
    }

    std::optional<TargetStatus> read_status() {
        auto r = remote_(report_.host, {"--json", "status"}, seconds(opts_.command_timeout));
        answering_ = r.ok();
        if (!r.ok()) {
            last_error_ = r.detail;
            return std::nullopt;
        }
        last_answer_ = Clock::now();
        auto line = r.json_line();
        try {
            if (line) return parse_target_status(*line);
            last_error_ = "status printed no JSON";
        } catch (const Error& e) {
            last_error_ = e.what();
        }
        return std::nullopt;
    }

    bool pick(const TargetStatus& status) {
        report_.previous = default_generation(status);
        report_.generation = opts_.generation ? opts_.generation : newest_untried(status);
        if (!report_.generation) {
            finish(Outcome::not_deployed, "no new generation: every entry is good or bad (install one first, --push)");
            return false;
        }
        if (report_.generation == report_.previous) {
            finish(Outcome::not_deployed,
                   "generation " + std::to_string(*report_.generation) + " is already the default");
            return false;
        }
        return true;
    }

    bool arm() {
        const std::string gen = std::to_string(*report_.generation);
        const char* mode = opts_.mode == TrialMode::live ? "--live" : "--reboot";
        progress("arming generation " + gen + " (try " + mode + ", confirm within " +
                 std::to_string(opts_.confirm_timeout) + " s)");
        auto r = remote_(report_.host,
                         {"--json", "try", gen, mode, "--confirm-timeout", std::to_string(opts_.confirm_timeout)},
                         seconds(opts_.command_timeout));
        if (auto line = r.json_line()) report_.trial_id = parse_trial_id(*line).value_or("");
        if (!report_.trial_id.empty()) return true;
        if (r.exit_status == 255 || r.timed_out) {
            // The connection broke (a reboot?) before the ID arrived: the
            // status of the trial boot names it.
            progress("no trial ID from 'try' (" + r.detail + "); reading it from the target's status");
            return true;
        }
        finish(Outcome::not_deployed, "arming generation " + gen + " failed: " + r.detail);
        rolled_back_while_arming();
        return false;
    }

    // A live trial that failed its activation or its own checks was armed
    // and reverted within 'try', which says so: "live trial of generation N
    // reverted: REASON" (cli/verbs/try.cpp).
    void rolled_back_while_arming() {
        const std::string said = "live trial of generation " + std::to_string(*report_.generation) + " reverted: ";
        auto at = report_.detail.find(said);
        if (opts_.mode != TrialMode::live || at == std::string::npos) return;
        report_.outcome = Outcome::rolled_back;
        report_.detail = report_.detail.substr(at + said.size());
    }

    // Adopts the ID of a trial of our generation when 'try' gave none.
    void adopt_trial(const TargetStatus& status) {
        if (report_.trial_id.empty() && status.trial && status.trial->generation == report_.generation)
            report_.trial_id = status.trial->id;
    }

    // Polls status on new connections until it shows `want` (or an end),
    // for at most `bound`. Returns the last thing seen.
    Seen wait_until(Seen want, milliseconds bound, const std::string& what) {
        const auto start = Clock::now();
        auto last_line = Clock::time_point{};
        std::string last_text;
        while (true) {
            auto status = read_status();
            Seen seen = Seen::pending;
            if (status) {
                adopt_trial(*status);
                seen = observe(*status, *report_.generation, report_.trial_id);
                // `previous` stays the default before the deploy, unless the
                // target rolled back: then it is where the target went.
                if (seen == Seen::rolled_back) {
                    report_.detail = rollback_reason(*status, *report_.generation);
                    report_.previous = default_generation(*status);
                }
                if (seen == want || seen == Seen::rolled_back || seen == Seen::promoted) {
                    if (seen == Seen::awaiting_confirm) window_seen_ = Clock::now();
                    return seen;
                }
            }
            if (Clock::now() - start >= bound) return seen;
            std::string text = "waiting for " + what + (status ? "" : " (no answer: " + last_error_ + ")");
            if (text != last_text || Clock::now() - last_line >= seconds(10)) {
                progress(std::to_string(elapsed_s(start)) + " s: " + text);
                last_text = text;
                last_line = Clock::now();
            }
            std::this_thread::sleep_for(opts_.poll_interval);
        }
    }

    // What is left of the window, as the deployer can tell (its start is
    // known to within one poll).
    milliseconds window_left() const {
        auto end = window_seen_ + seconds(opts_.confirm_timeout) - opts_.poll_interval;
        return std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(end - Clock::now()));
    }

    std::vector<std::string> check_environment() const {
        std::string prefix;
        for (const auto& w : ssh_prefix(opts_.ssh)) prefix += (prefix.empty() ? "" : " ") + w;
        return {"NIXBOOT_TARGET=" + report_.host, "NIXBOOT_TARGET_HOST=" + host_name(report_.host),
                "NIXBOOT_GENERATION=" + std::to_string(*report_.generation), "NIXBOOT_TRIAL_ID=" + report_.trial_id,
                "NIXBOOT_SSH=" + prefix};
    }

    // Runs the deployer's checks; the revert reason of the first failure, or nullopt.
    std::optional<std::string> run_checks() {
        if (checks_.empty()) return std::nullopt;
        auto specs = checks_;
        auto left = window_left();
        for (auto& s : specs) {
            s.env = check_environment();
            s.timeout = std::max(milliseconds(1000), std::min(s.timeout, left));
        }
        progress("the trial waits for the confirm; running " + std::to_string(specs.size()) + " deployer check(s)");
        std::vector<std::string> lines;
        auto results = health::run_checks(specs, [&](std::string_view line) {
            lines.emplace_back(line);
            progress("check " + std::string(line));
        });
        for (std::size_t i = 0; i < results.size(); ++i) {
            progress("check " + health::describe(results[i]));
            if (results[i].outcome != health::CheckOutcome::passed)
                return "deployer check " + results[i].name + " failed: " + failure_detail(results[i], lines);
        }
        return std::nullopt;
    }

    // The check's last output line, else what run_checks says ("exit status 1").
    static std::string failure_detail(const health::CheckResult& r, const std::vector<std::string>& lines) {
        const std::string prefix = r.name + ": ";
        for (auto it = lines.rbegin(); it != lines.rend(); ++it)
            if (it->starts_with(prefix) && it->size() > prefix.size())
                return it->substr(prefix.size()) + " (" + r.detail + ")";
        return r.detail;
    }

    void confirm() {
        verdict_sent_ = true;
        progress("confirming trial " + report_.trial_id);
        auto r = remote_(report_.host, {"confirm", report_.trial_id}, seconds(opts_.command_timeout));
        if (!r.ok()) progress("confirm failed: " + r.detail);
    }

    void revert(const std::string& reason) {
        verdict_sent_ = true;
        progress(reason + "; reverting");
        auto r = remote_(report_.host, {"live-revert", "--reason", reason}, seconds(opts_.command_timeout));
        if (!r.ok() && r.exit_status != 255) progress("live-revert failed: " + r.detail);
    }

    // Waits for the target to say how it ended and reports that.
    TargetReport settle() {
        auto seen = wait_until(Seen::promoted, seconds(opts_.settle_timeout), "the target to report the outcome");
        if (seen == Seen::promoted) return finish(Outcome::promoted, "");
        if (seen == Seen::rolled_back)
            return finish(Outcome::rolled_back, report_.detail.empty() ? "(no reason recorded)" : report_.detail);
        if (!answering_ && !verdict_sent_)
            return finish(Outcome::unreachable,
                          "no answer for " + std::to_string(elapsed_s(last_answer_)) + " s (" + last_error_ + ")");
        return finish(Outcome::unknown, "no outcome within " + std::to_string(opts_.settle_timeout) + " s" +
                                            (last_error_.empty() ? "" : " (" + last_error_ + ")"));
    }
};

health::CheckSpec check_spec(const std::filesystem::path& path, std::vector<std::string> args, unsigned timeout) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw UsageError("check '" + path.string() + "': " + std::strerror(errno));
    if (auto why = health::refusal_reason(st)) throw UsageError("check '" + path.string() + "' is refused: " + *why);
    std::string name = path.filename().string();
    for (const auto& a : args) name += " " + a;
    return health::CheckSpec{name, health::CheckKind::required,   path, std::move(args), seconds(timeout),
                             {},   health::default_max_line_bytes};
}

}  // namespace

std::vector<health::CheckSpec> resolve_checks(const std::vector<std::string>& checks, unsigned timeout) {
    std::vector<health::CheckSpec> out;
    for (const auto& check : checks) {
        auto words = split_words(check);
        std::filesystem::path path = words.front();
        std::error_code ec;
        if (!std::filesystem::is_directory(path, ec)) {
            out.push_back(check_spec(path, {words.begin() + 1, words.end()}, timeout));
            continue;
        }
        if (words.size() > 1) throw UsageError("check '" + check + "': a directory takes no arguments");
        std::vector<std::filesystem::path> files;
        for (const auto& e : std::filesystem::directory_iterator(path))
            if (!e.path().filename().string().starts_with(".")) files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) out.push_back(check_spec(f, {}, timeout));
    }
    return out;
}

Transport ssh_transport(const SshOptions& ssh) {
    return [ssh](const std::string& host, const std::vector<std::string>& args, milliseconds timeout) {
        return run_remote_nixboot(ssh, host, args, timeout);
    };
}

TargetReport deploy_target(const DeployOptions& options, const std::vector<health::CheckSpec>& checks,
                           const std::string& host, const Progress& progress, const Transport& transport) {
    try {
        const Transport remote = transport ? transport : ssh_transport(options.ssh);
        return TargetDeploy(options, checks, host, progress, remote).run();
    } catch (const std::exception& e) {
        TargetReport r;
        r.host = host;
        r.detail = e.what();
        return r;
    }
}

std::vector<TargetReport> deploy_all(const DeployOptions& options, const std::vector<health::CheckSpec>& checks,
                                     const Progress& progress, const std::function<void(const TargetReport&)>& done) {
    std::vector<TargetReport> reports(options.hosts.size());
    std::atomic<std::size_t> next{0};
    auto worker = [&] {
        for (std::size_t i = next++; i < reports.size(); i = next++) {
            reports[i] = deploy_target(options, checks, options.hosts[i], progress);
            if (done) done(reports[i]);
        }
    };
    std::vector<std::thread> threads;
    const std::size_t n = std::min<std::size_t>(std::max(1u, options.parallel), reports.size());
    for (std::size_t t = 0; t < n; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    return reports;
}

}  // namespace nixboot::deploy
