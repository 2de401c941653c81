#include "boot/health/verdict.hpp"

#include "boot/efivars.hpp"
#include "boot/generations.hpp"
#include "boot/health/cmdline.hpp"
#include "boot/health/detect.hpp"
#include "boot/health/stability.hpp"
#include "boot/health/watchdog.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <spdlog/spdlog.h>

namespace nixboot::health {

const char* to_string(Verdict verdict) noexcept { return verdict == Verdict::good ? "good" : "bad"; }

Decision decide(const std::vector<CheckResult>& results, const std::vector<CheckRefusal>& refused) {
    for (const auto& r : refused)
        if (r.kind == CheckKind::required)
            return {Verdict::bad, "required check '" + r.name + "' refused: " + r.reason};
    unsigned required = 0;
    std::vector<std::string> wanted_failed;
    for (const auto& r : results) {
        if (r.kind == CheckKind::required) {
            if (r.outcome != CheckOutcome::passed)
                return {Verdict::bad, "required check '" + r.name + "' " + to_string(r.outcome) +
                                          (r.detail.empty() ? "" : " (" + r.detail + ")")};
            ++required;
        } else if (r.outcome != CheckOutcome::passed) {
            wanted_failed.push_back(r.name);
        }
    }
    for (const auto& r : refused)
        if (r.kind == CheckKind::wanted) wanted_failed.push_back(r.name);
    std::string reason =
        required == 1 ? "the required check passed" : "all " + std::to_string(required) + " required checks passed";
    if (!wanted_failed.empty()) {
        reason += " (wanted check" + std::string(wanted_failed.size() > 1 ? "s" : "") + " failed: ";
        for (std::size_t i = 0; i < wanted_failed.size(); ++i) reason += (i ? ", " : "") + wanted_failed[i];
        reason += ")";
    }
    return {Verdict::good, reason};
}

std::string format_verdict(const Decision& d) {
    std::string reason = d.reason;
    for (char& c : reason)
        if (c == '\n') c = ' ';
    return std::string(to_string(d.verdict)) + "\n" + reason + "\n";
}

Decision parse_verdict(std::string_view text, std::string_view origin) {
    auto nl = text.find('\n');
    std::string_view word = text.substr(0, nl);
    Decision d;
    if (word == "good")
        d.verdict = Verdict::good;
    else if (word == "bad")
        d.verdict = Verdict::bad;
    else
        throw ParseError(std::string(origin) + ":1: expected 'good' or 'bad'");
    if (nl != std::string_view::npos) {
        std::string_view rest = text.substr(nl + 1);
        d.reason = std::string(rest.substr(0, rest.find('\n')));
    }
    return d;
}

std::string unverdicted_trial_reason(unsigned trial_generation, std::optional<unsigned> booted_generation) {
    std::string out = "trial boot of generation " + std::to_string(trial_generation) + " did not reach a verdict";
    if (booted_generation) out += "; booted generation " + std::to_string(*booted_generation) + " instead";
    return out;
}

std::optional<std::string> disarm_watchdog(const std::filesystem::path& device) {
    try {
        Watchdog dog = Watchdog::open(device.string());
        dog.disarm();
        return std::nullopt;
    } catch (const SysError& e) {
        if (e.errno_value() == ENOENT) return std::nullopt;  // no watchdog at all
        if (e.errno_value() == EBUSY) return std::nullopt;   // the feeder holds it and disarms itself
        return std::string(e.what());
    }
}

namespace {

std::optional<std::string> read_text(const std::filesystem::path& path, std::size_t max) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::string data(max + 1, '\0');
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    data.resize(static_cast<std::size_t>(in.gcount()));
    if (data.size() > max) throw Error("'" + path.string() + "' is larger than " + std::to_string(max) + " bytes");
    return data;
}

BootRecord load_record(const BootCheckOptions& opts, BootCheckReport& report) {
    auto path = opts.run / boot_record_path;
    try {
        if (auto text = read_text(path, max_boot_record_bytes)) {
            report.source = RecordSource::stage1;
            return parse_boot_record(*text, path.string());
        }
    } catch (const Error& e) {
        report.notes.push_back(std::string(e.what()) + "; recomputing what booted");
    }
    report.source = RecordSource::recomputed;
    KernelCmdline cmdline;
    try {
        if (auto text = read_text(opts.cmdline, max_cmdline_bytes * 2)) cmdline = parse_kernel_cmdline(*text);
    } catch (const Error& e) {
        report.notes.push_back(e.what());
    }
    for (const auto& p : cmdline.problems) report.notes.push_back(p);
    LoaderVars vars;
    EfiVars efi(opts.efivars);
    try {
        vars.boot_count_path = efi.get_string(efivar_name::loader_boot_count_path);
    } catch (const Error& e) {
        report.notes.push_back(e.what());
    }
    try {
        vars.loader_info = efi.get_string(efivar_name::loader_info);
    } catch (const Error& e) {
        report.notes.push_back(e.what());
    }
    Detection d = detect_boot(cmdline, vars);
    for (auto& p : d.problems) report.notes.push_back(std::move(p));
    return d.record;
}

std::optional<double> uptime_seconds(const std::filesystem::path& path) {
    auto text = read_text(path, 256);
    if (!text) return std::nullopt;
    char* end = nullptr;
    double value = std::strtod(text->c_str(), &end);
    if (end == text->c_str()) return std::nullopt;
    return value;
}

std::optional<unsigned> generation_of(std::string_view entry) {
    if (auto parsed = parse_entry_id(entry)) return parsed->generation;
    return std::nullopt;
}

// True when the journal holds a good or bad verdict on `entry` after its last
// `arm` (or it was never armed).
bool verdict_since_arm(const JournalContents& journal, std::string_view entry) {
    bool armed = false, decided = false;
    for (const auto& r : journal.records) {
        if (r.entry != entry) continue;
        if (r.event == JournalEvent::arm) {
            armed = true;
            decided = false;
        } else if (r.event == JournalEvent::good || r.event == JournalEvent::bad)
            decided = true;
    }
    return !armed || decided;
}

}  // namespace

// Machine::mark_bad journals only a change of state; a spent trial
// ("+0-1") already reads as bad on disk, so the verdict and its reason are
// journaled here when the transition itself did not.
void mark_bad_with_reason(Machine& machine, const std::string& entry, const std::string& reason) {
    machine.mark_bad(entry, reason);
    const auto& state = machine.options().state;
    if (verdict_since_arm(read_journal(state), entry)) return;
    LoaderView view = machine.backend().read();
    JournalRecord r;
    r.time = journal_now();
    r.event = JournalEvent::bad;
    r.generation = generation_of(entry);
    r.entry = entry;
    if (const Entry* e = view.find(entry)) r.file = e->file;
    r.bootloader = std::string(to_string(view.bootloader));
    try {
        r.boot_id = current_boot_id();
    } catch (const Error&) {}
    r.reason = reason;
    try {
        append_journal(state, r);
    } catch (const Error& e) {
        throw Error(entry + " is marked bad, but journaling its verdict failed: " + std::string(e.what()) +
                    "; nothing more to run");
    }
}

namespace {

// Trials booted before this boot that never got a verdict: the loader
// consumed a try (done > 0), the journal has no verdict since their arm,
// they are not what booted now, and the loader will not boot them again by
// itself (not armed with tries left).
void settle_unverdicted(Machine& machine, const BootRecord& record, BootCheckReport& report) {
    LoaderView view = machine.backend().read();
    JournalContents journal = read_journal(machine.options().state);
    std::optional<unsigned> booted_generation = generation_of(record.entry);
    if (!booted_generation && view.booted) booted_generation = generation_of(*view.booted);
    std::string booted = record.entry.empty() ? view.booted.value_or("") : record.entry;
    for (const Entry& e : view.entries) {
        if (e.state == EntryState::good || e.tries_done == 0) continue;
        if (e.id == booted) continue;
        if (view.armed && *view.armed == e.id && e.tries_left > 0) continue;
        if (verdict_since_arm(journal, e.id)) continue;
        std::string reason = unverdicted_trial_reason(e.generation, booted_generation);
        mark_bad_with_reason(machine, e.id, reason);
        report.settled.push_back(e.id + ": " + reason);
    }
}

// A power cut during an earlier boot's promotion: the journal's last record
// is the `good` verdict (Machine::mark_good journals it before touching the
// loader) and the entry is not yet good and the default. Finishing it keeps
// G3 (a good verdict ends as the default) with exactly one verdict.
void finish_interrupted_promotion(Machine& machine, BootCheckReport& report) {
    const JournalContents journal = read_journal(machine.options().state);
    if (journal.records.empty()) return;
    const JournalRecord& last = journal.records.back();
    if (last.event != JournalEvent::good || last.entry.empty()) return;
    const LoaderView view = machine.backend().read();
    const Entry* e = view.find(last.entry);
    if (!e) return;
    // The profile moves last: a cut after the default moved leaves it older
    // (a generation built since then leaves it newer, and it stays).
    const std::optional<unsigned> profile = current_generation(machine.options().profile);
    const bool profile_done = !profile || *profile >= e->generation;
    if (e->state == EntryState::good && view.persistent_default == last.entry && !view.armed && profile_done) return;
    machine.mark_good(last.entry, last.reason);
    report.finished.push_back(last.entry);
}

bool is_trial_boot_of(const BootRecord& record, unsigned generation) {
    return record.trial == TrialBoot::yes && record.entry == entry_id(generation);
}

// Why a trial recorded in STATE/live by an earlier boot ends bad now.
std::string interrupted_reason(const LiveTrial& trial, const BootRecord& record, const LoaderView& view) {
    const std::string gen = std::to_string(trial.generation);
    if (trial.kind == TrialKind::live)
        return "live trial of generation " + gen + " was cut short by a reboot; booted the default instead";
    if (trial.status == LiveStatus::armed) {
        std::optional<unsigned> booted = generation_of(record.entry);
        if (!booted && view.booted) booted = generation_of(*view.booted);
        return unverdicted_trial_reason(trial.generation, booted);
    }
    return "trial boot of generation " + gen +
           " was cut short by a reboot while it waited for a confirmation; booted the default instead";
}

void settle_interrupted_live(Machine& machine, const BootCheckOptions& opts, const BootRecord& record,
                             BootCheckReport& report) {
    auto trial = read_live_trial(opts.live.state);
    if (!trial) return;
    const LoaderView view = machine.backend().read();
    if (trial->kind == TrialKind::reboot && trial->status == LiveStatus::armed) {
        // The trial boot itself decides below; a trial the loader has not
        // booted yet is left armed.
        if (is_trial_boot_of(record, trial->generation)) return;
        const Entry* e = view.find(entry_id(trial->generation));
        if (e && view.armed == e->id && e->tries_left > 0) return;
        // Recorded, never armed (a crash in 'nixboot try'): nothing booted it.
        if (auto dropped = drop_unarmed_trial(machine, opts.live)) {
            report.notes.push_back(*dropped);
            return;
        }
    } else {
        std::string boot_id = current_boot_id(opts.live.boot_id_source);
        if (trial->boot_id == boot_id) return;  // running in this boot: the timer owns it
    }
    std::string reason = interrupted_reason(*trial, record, view);
    if (revert_live_trial(machine, opts.live, reason, Activate::no))
        report.settled.push_back(entry_id(trial->generation) + ": " + reason);
}

// The rollback the journal ends on, unless STATE/rollback-announced holds it.
std::optional<JournalRecord> unannounced_rollback(const std::filesystem::path& state) {
    auto last = last_rollback(read_journal(state).records);
    if (!last) return std::nullopt;
    auto dir = RootDir::open_or_create(state);
    auto announced = dir.read(rollback_announced_name, 64 * 1024);
    if (announced && *announced == format_journal_line(*last) + "\n") return std::nullopt;
    return last;
}

// The stability window after the checks passed on a trial boot: waits (cut to
// what verdict-timeout leaves, the watchdog being fed meanwhile), then runs
// the checks again and compares the services' restart counts and states.
Decision hold_steady(const BootCheckOptions& opts, const CheckDiscovery& discovery, Decision passed,
                     BootCheckReport& report, const OutputSink& sink) {
    using std::chrono::seconds;
    const auto up = uptime_seconds(opts.uptime);
    // The second round of checks and the verdict still fit before verdict-timeout.
    const auto margin = seconds(opts.check_settings.default_timeout.count() + 5);
    const auto left = opts.verdict_timeout - seconds(static_cast<long long>(up.value_or(0))) - margin;
    const seconds wait = std::max(seconds(0), std::min(opts.stability_window, left));
    if (wait < opts.stability_window)
        report.notes.push_back("the stability window is cut to " + std::to_string(wait.count()) +
                               " s: the verdict is due at verdict-timeout (" +
                               std::to_string(opts.verdict_timeout.count()) + " s after boot)");
    const std::string window = "within the " + std::to_string(wait.count()) + " s stability window";
    ServiceStates before, after;
    try {
        before = read_service_states(seconds(30));
        if (sink)
            sink("nixboot: checks passed; watching them and the services for " + std::to_string(wait.count()) +
                 " s (stability-window)");
        std::this_thread::sleep_for(wait);
        after = read_service_states(seconds(30));
    } catch (const Error& e) {
        return {Verdict::bad, passed.reason + ", but the stability window could not be watched: " + e.what()};
    }
    report.results = run_checks(discovery.checks, sink);
    const Decision again = decide(report.results, report.refused);
    if (again.verdict != Verdict::good)
        return {Verdict::bad, "checks passed, then failed " + window + ": " + again.reason};
    const auto unstable = instability(before, after);
    if (!unstable.empty()) {
        std::string what;
        for (const auto& u : unstable) what += (what.empty() ? "" : ", ") + u;
        return {Verdict::bad, "checks passed, but " + window + " " + what};
    }
    return {Verdict::good,
            passed.reason + ", and kept passing with no service restarting for " + std::to_string(wait.count()) + " s"};
}

bool settled_in_this_run(const BootCheckReport& report, const std::string& entry) {
    return std::any_of(report.settled.begin(), report.settled.end(),
                       [&](const std::string& s) { return s.starts_with(entry + ": "); });
}

// STATE/live's reboot trial of `entry`, if it waits for a confirm.
std::optional<LiveTrial> reboot_trial_of(const std::filesystem::path& state, const std::string& entry) {
    auto trial = read_live_trial(state);
    if (trial && trial->kind == TrialKind::reboot && entry_id(trial->generation) == entry) return trial;
    return std::nullopt;
}

// The check re-run during a reboot trial's window (status running, confirmed
// or reverting in this boot): still waiting, or the outcome finished here
// (past the deadline the revert is done by whoever comes first).
BootCheckReport resume_confirm_window(Machine& machine, const BootCheckOptions& opts, const LiveTrial& trial,
                                      BootCheckReport report) {
    report.resumed = true;
    if (trial.status == LiveStatus::running && journal_now() <= trial.deadline) {
        report.awaiting = trial;
        report.healthy = true;
        return report;
    }
    const std::string reason = no_confirm_reason(trial);
    if (revert_live_trial(machine, opts.live, reason, Activate::no)) {
        report.decision = Decision{Verdict::bad, reason};
        report.healthy = false;
        report.reboot = true;  // G6: back to the last good generation whatever on-failure says
    } else {
        report.decision = Decision{Verdict::good, "confirmed from outside"};
    }
    return report;
}

}  // namespace

void announce_rollback(const std::filesystem::path& state, const JournalRecord& record) {
    RootDir::open_or_create(state).write_atomic(rollback_announced_name, format_journal_line(record) + "\n", Sync::yes);
}

BootCheckReport run_boot_check(Machine& machine, const BootCheckOptions& opts, const OutputSink& sink) {
    BootCheckReport report;
    CheckDiscovery discovery = discover_checks(opts.checks_dir, opts.check_settings);
    report.refused = discovery.refused;
    report.notes = discovery.ignored;
    report.record = load_record(opts, report);
    const BootRecord& record = report.record;

    finish_interrupted_promotion(machine, report);
    settle_interrupted_live(machine, opts, record, report);
    settle_unverdicted(machine, record, report);

    if (record.trial != TrialBoot::yes || record.entry.empty()) {
        report.results = run_checks(discovery.checks, sink);
        report.healthy = decide(report.results, report.refused).verdict == Verdict::good;
        report.rolled_back = unannounced_rollback(machine.options().state);
        return report;
    }

    RootDir run = RootDir::open_or_create(opts.run / "nixboot");
    std::optional<LiveTrial> confirm_trial = reboot_trial_of(opts.live.state, record.entry);
    Decision decision;
    if (auto text = run.read("verdict", 4096)) {
        decision = parse_verdict(*text, run.display("verdict").string());
        report.resumed = true;
    } else if (confirm_trial && confirm_trial->status != LiveStatus::armed) {
        // A re-run in the window: no verdict yet, never decided twice.
        return resume_confirm_window(machine, opts, *confirm_trial, std::move(report));
    } else {
        auto up = uptime_seconds(opts.uptime);
        if (up && *up >= static_cast<double>(opts.verdict_timeout.count())) {
            decision = {Verdict::bad, "no verdict within the verdict timeout of " +
                                          std::to_string(opts.verdict_timeout.count()) + " s after boot"};
        } else {
            report.results = run_checks(discovery.checks, sink);
            decision = decide(report.results, report.refused);
            if (decision.verdict == Verdict::good && opts.stability_window.count() > 0) {
                decision = hold_steady(opts, discovery, decision, report, sink);
                up = uptime_seconds(opts.uptime);
            }
        }
        if (decision.verdict == Verdict::good && settled_in_this_run(report, record.entry))
            decision = {Verdict::bad,
                        "its trial was settled bad earlier in this check; never promoted without "
                        "its confirm"};
        if (decision.verdict == Verdict::good && confirm_trial) {
            // No verdict file while the trial waits: the watchdog feeder keeps
            // feeding until verdict-timeout, so the window ends there at the
            // latest and a hang during it is still reset into the default.
            up = uptime_seconds(opts.uptime);  // the checks took their time
            const auto limit = opts.verdict_timeout - std::chrono::seconds(static_cast<long long>(up.value_or(0)));
            try {
                report.awaiting = open_confirm_window(opts.live, confirm_trial->generation, limit);
            } catch (const Error& e) {
                decision = {Verdict::bad, decision.reason + ", but " + e.what()};
            }
            if (report.awaiting) {
                if (std::chrono::seconds(report.awaiting->deadline - report.awaiting->started).count() <
                    static_cast<long long>(report.awaiting->window))
                    report.notes.push_back("the confirm window is cut to " +
                                           std::to_string(report.awaiting->deadline - report.awaiting->started) +
                                           " s: the watchdog stops being fed at verdict-timeout (" +
                                           std::to_string(opts.verdict_timeout.count()) + " s after boot)");
                report.healthy = true;
                return report;
            }
            if (decision.verdict == Verdict::good) {
                // Not armed any more: another check opened the window, or a
                // confirm or revert came first. Never promoted from here.
                if (auto now = reboot_trial_of(opts.live.state, record.entry))
                    return resume_confirm_window(machine, opts, *now, std::move(report));
                if (auto written = run.read("verdict", 4096)) {
                    report.decision = parse_verdict(*written, run.display("verdict").string());
                    report.resumed = true;
                    report.healthy = report.decision->verdict == Verdict::good;
                    return report;
                }
                decision = {Verdict::bad, "its confirm record is gone and no verdict was recorded"};
            }
        }
        // Persisted before acting: a re-run finishes this verdict, never the other.
        run.write_atomic("verdict", format_verdict(decision), Sync::yes);
    }
    report.decision = decision;
    report.healthy = decision.verdict == Verdict::good;
    std::string reason = "trial boot of " + record.entry + ": " + decision.reason;
    if (decision.verdict == Verdict::good) {
        machine.mark_good(record.entry, reason);
        if (auto note = disarm_watchdog(opts.watchdog_device)) report.notes.push_back(*note);
    } else {
        if (confirm_trial)
            revert_live_trial(machine, opts.live, reason, Activate::no);  // bad, journaled, STATE/live removed
        else
            mark_bad_with_reason(machine, record.entry, reason);
        if (opts.on_failure == OnFailure::reboot)
            report.reboot = true;
        else if (auto note = disarm_watchdog(opts.watchdog_device))
            report.notes.push_back(*note);
    }
    spdlog::debug("verdict on {}: {} ({})", record.entry, to_string(decision.verdict), decision.reason);
    return report;
}

}  // namespace nixboot::health
