#include "boot/health/live.hpp"

#include "boot/generations.hpp"
#include "boot/health/boot_record.hpp"
#include "boot/health/cmdline.hpp"
#include "boot/util/process.hpp"
#include "boot/health/verdict.hpp"
#include "boot/journal.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"
#include "boot/util/fd.hpp"
#include "boot/util/lock.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>

namespace nixboot::health {

const char* to_string(LiveStatus status) noexcept {
    switch (status) {
        case LiveStatus::confirmed: return "confirmed";
        case LiveStatus::reverting: return "reverting";
        case LiveStatus::armed: return "armed";
        case LiveStatus::running: break;
    }
    return "running";
}

const char* to_string(TrialKind kind) noexcept { return kind == TrialKind::reboot ? "reboot" : "live"; }

namespace {

bool is_trial_id(std::string_view s) {
    return s.size() == 32 &&
           std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// 128 bits from the kernel's CSPRNG: an ID nobody guesses or replays.
std::string new_trial_id() {
    unsigned char bytes[16];
    std::size_t got = 0;
    while (got < sizeof bytes) {
        const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("getrandom for the trial ID");
        }
        got += static_cast<std::size_t>(n);
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string id;
    for (unsigned char b : bytes) {
        id += hex[b >> 4];
        id += hex[b & 15];
    }
    return id;
}

}  // namespace

std::string format_live_trial(const LiveTrial& t) {
    std::string out;
    out += "status=" + std::string(to_string(t.status)) + "\n";
    out += "generation=" + std::to_string(t.generation) + "\n";
    out += "previous=" + std::to_string(t.previous) + "\n";
    out += "previous-toplevel=" + t.previous_toplevel.string() + "\n";
    out += "boot-id=" + t.boot_id + "\n";
    out += "started=" + std::to_string(static_cast<long long>(t.started)) + "\n";
    out += "deadline=" + std::to_string(static_cast<long long>(t.deadline)) + "\n";
    out += "unit=" + t.unit + "\n";
    if (!t.id.empty()) out += "id=" + t.id + "\n";
    if (t.kind == TrialKind::reboot) out += "kind=reboot\n";
    // A live trial has no window; one read with it keeps it, so nothing read
    // is lost on the next write.
    if (t.kind == TrialKind::reboot || t.window != 0) out += "window=" + std::to_string(t.window) + "\n";
    if (!t.reason.empty()) out += "reason=" + t.reason + "\n";
    return out;
}

LiveTrial parse_live_trial(std::string_view text, std::string_view origin) {
    LiveTrial t;
    bool has_generation = false;
    for_each_key_value(text, origin, [&](const KeyValueLine& kv) {
        const std::string_view key = kv.key, value = kv.value;
        auto number = [&](unsigned max) {
            auto n = parse_decimal(value, max);
            if (!n) kv.bad_value();
            return *n;
        };
        if (key == "status") {
            if (value == "running")
                t.status = LiveStatus::running;
            else if (value == "confirmed")
                t.status = LiveStatus::confirmed;
            else if (value == "reverting")
                t.status = LiveStatus::reverting;
            else if (value == "armed")
                t.status = LiveStatus::armed;
            else
                kv.bad_value();
        } else if (key == "generation") {
            t.generation = number(4294967295u);
            has_generation = true;
        } else if (key == "previous")
            t.previous = number(4294967295u);
        else if (key == "previous-toplevel")
            t.previous_toplevel = std::string(value);
        else if (key == "boot-id")
            t.boot_id = std::string(value);
        else if (key == "started")
            t.started = number(4294967295u);
        else if (key == "deadline")
            t.deadline = number(4294967295u);
        else if (key == "unit")
            t.unit = std::string(value);
        else if (key == "id") {
            if (!is_trial_id(value)) kv.bad_value();
            t.id = std::string(value);
        } else if (key == "kind") {
            if (value == "live")
                t.kind = TrialKind::live;
            else if (value == "reboot")
                t.kind = TrialKind::reboot;
            else
                kv.bad_value();
        } else if (key == "window")
            t.window = number(86400);
        else if (key == "reason")
            t.reason = std::string(value);
    });
    if (!has_generation) throw ParseError(std::string(origin) + ": no 'generation'");
    return t;
}

std::optional<LiveTrial> read_live_trial(const std::filesystem::path& state) {
    if (!std::filesystem::exists(state)) return std::nullopt;
    RootDir dir = RootDir::open(state);
    auto text = dir.read("live", 4096);
    if (!text) return std::nullopt;
    return parse_live_trial(*text, dir.display("live").string());
}

namespace {

// STATE/live.lock: serializes try --live, confirm and live-revert (not the
// global STATE/lock, which Machine takes for each transition).
Lock live_lock(const std::filesystem::path& state) { return Lock::acquire(state, LockWait::yes, "live.lock"); }

void write_live(const std::filesystem::path& state, const LiveTrial& trial) {
    RootDir dir = RootDir::open_or_create(state);
    dir.write_atomic("live", format_live_trial(trial), Sync::yes);
}

void remove_live(const std::filesystem::path& state) {
    RootDir dir = RootDir::open(state);
    dir.remove("live", Sync::yes);
}

void journal(const std::filesystem::path& state, JournalEvent event, unsigned generation, const std::string& boot_id,
             const std::string& reason) {
    JournalRecord r;
    r.time = journal_now();
    r.event = event;
    r.generation = generation;
    r.entry = entry_id(generation);
    r.boot_id = boot_id;
    r.reason = reason;
    append_journal(state, r);
}

std::string boot_id_or_empty(const std::filesystem::path& source) {
    try {
        return current_boot_id(source);
    } catch (const Error&) {
        return "";
    }
}

std::string status_text(int status) {
    return status > 128 ? "killed by signal " + std::to_string(status - 128) : "exit status " + std::to_string(status);
}

// TOPLEVEL/bin/switch-to-configuration test; returns a failure reason or "".
std::string activate(const std::filesystem::path& toplevel) {
    auto program = toplevel / "bin" / "switch-to-configuration";
    int status = run_command({program.string(), "test"});
    if (status == 0) return "";
    return "'" + program.string() + " test' failed (" + status_text(status) + ")";
}

void stop_timer(const LiveOptions& opts, const std::string& unit) {
    if (unit.empty()) return;
    auto argv = program_from_env("NIXBOOT_SYSTEMCTL", opts.systemctl_stop);
    argv.push_back(unit + ".timer");
    try {
        run_command(argv);  // best effort: a timer that fires anyway finds no live trial
    } catch (const Error&) {}
}

std::optional<unsigned> generation_of_toplevel(const std::filesystem::path& profile,
                                               const std::filesystem::path& toplevel) {
    std::error_code ec;
    auto want = std::filesystem::canonical(toplevel, ec);
    if (ec) return std::nullopt;
    GenerationScan scan = discover_generations(profile);
    for (const auto& g : scan.ok) {
        auto have = std::filesystem::canonical(g.toplevel, ec);
        if (!ec && have == want) return g.number;
    }
    return std::nullopt;
}

// On a reboot trial's own boot: RUN/nixboot/verdict pins the outcome for a
// re-run of `nixboot check` (which would otherwise decide again) and tells the
// watchdog feeder to stop; the watchdog is stopped if nobody holds it. From
// a later boot (the trial was cut short) this boot's verdict is not ours, nor
// in the boot that armed it (no window opened yet: deadline 0).
void record_trial_boot_verdict(const LiveOptions& opts, const LiveTrial& trial, const Decision& decision) {
    if (trial.kind != TrialKind::reboot || trial.boot_id.empty() || trial.deadline == 0 ||
        trial.boot_id != boot_id_or_empty(opts.boot_id_source))
        return;
    RootDir::open_or_create(opts.run / "nixboot").write_atomic("verdict", format_verdict(decision), Sync::yes);
    if (decision.verdict == Verdict::good) disarm_watchdog(opts.watchdog_device);
}

// The confirm's steps after status=confirmed is on disk; re-runnable.
void finish_confirm(Machine& machine, const LiveOptions& opts, const LiveTrial& trial) {
    stop_timer(opts, trial.unit);
    const std::string reason =
        !trial.reason.empty() ? trial.reason
        : trial.kind == TrialKind::reboot
            ? "trial boot of generation " + std::to_string(trial.generation) + " confirmed from outside"
            : "live trial of generation " + std::to_string(trial.generation) + " confirmed";
    record_trial_boot_verdict(opts, trial, {Verdict::good, reason});
    machine.mark_good(entry_id(trial.generation), reason);
    journal(opts.state, JournalEvent::live_confirm, trial.generation, boot_id_or_empty(opts.boot_id_source),
            trial.reason.empty() ? "confirmed" : trial.reason);
    remove_live(opts.state);
}

// The revert's steps after status=reverting is on disk; re-runnable.
std::string finish_revert(Machine& machine, const LiveOptions& opts, const LiveTrial& trial, std::string_view reason,
                          Activate activation) {
    std::string failure;
    std::string entry = entry_id(trial.generation);
    if (trial.kind == TrialKind::reboot) {
        // Nothing to re-activate: the caller reboots into the default, which
        // never moved. A spent one-shot already reads bad on disk, so the
        // verdict is journaled with its reason (settle_unverdicted skips it).
        record_trial_boot_verdict(opts, trial, {Verdict::bad, std::string(reason)});
        if (machine.status().view.find(entry)) mark_bad_with_reason(machine, entry, std::string(reason));
    } else {
        if (activation == Activate::yes && !trial.previous_toplevel.empty())
            failure = activate(trial.previous_toplevel);
        if (machine.status().view.find(entry)) machine.mark_bad(entry, reason);
    }
    if (trial.previous != 0 && current_generation(opts.profile) == trial.generation &&
        std::filesystem::exists(generation_link(opts.profile, trial.previous)))
        switch_profile(opts.profile, trial.previous);
    journal(opts.state, JournalEvent::live_revert, trial.generation, boot_id_or_empty(opts.boot_id_source),
            std::string(reason) + (failure.empty() ? "" : "; " + failure));
    remove_live(opts.state);
    stop_timer(opts, trial.unit);
    return failure;
}

std::string date_text(std::time_t t) {
    char buf[32];
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// What the journal says became of the trial `id`: "live trial ID was
// confirmed at ...", "trial ID was reverted at ...: REASON" (a confirm or
// revert by mark-good, mark-bad or rollback says so in its reason), or that
// it is not known here.
std::string ended_how(const std::filesystem::path& state, std::string_view id) {
    const std::string trial = "trial " + std::string(id);
    std::optional<unsigned> generation;
    std::string what = trial, how = "is not known on this machine";
    for (const auto& r : read_journal(state).records) {
        const bool live = r.reason.starts_with("live " + trial + ",");
        if (r.event == JournalEvent::live_start && (live || r.reason.starts_with(trial + ","))) {
            generation = r.generation.value_or(0);
            what = (live ? "live " : "") + trial + " of generation " + std::to_string(*generation);
            how = "started at " + date_text(r.time) + " and did not end";
        } else if (generation && r.generation.value_or(0) == *generation &&
                   (r.event == JournalEvent::live_confirm || r.event == JournalEvent::live_revert)) {
            how = std::string(r.event == JournalEvent::live_confirm ? "was confirmed" : "was reverted") + " at " +
                  date_text(r.time) + (r.reason != "confirmed" ? ": " + r.reason : std::string());
            generation.reset();
        }
    }
    return what + " " + how;
}

// One trial that waits for a confirm at a time, of either kind.
void refuse_second_trial(const std::filesystem::path& state) {
    auto running = read_live_trial(state);
    if (!running) return;
    if (running->kind == TrialKind::live)
        throw Error("a live trial of generation " + std::to_string(running->generation) +
                    " is already running (until " + date_text(running->deadline) +
                    "); confirm it with 'nixboot confirm' or wait for its revert");
    if (running->status == LiveStatus::armed)
        throw Error("trial " + running->id + " of generation " + std::to_string(running->generation) +
                    " is armed and waits for its trial boot; reboot to run it, or cancel it with 'nixboot "
                    "live-revert' (marks generation " +
                    std::to_string(running->generation) + " bad, no reboot)");
    throw Error("trial " + running->id + " of generation " + std::to_string(running->generation) +
                " waits for a confirmation (" + to_string(running->status) + "); confirm it with 'nixboot confirm " +
                running->id + "' or wait for its revert");
}

std::string start_timer(const LiveOptions& opts, const LiveTrial& trial, std::time_t seconds) {
    auto argv = program_from_env("NIXBOOT_SYSTEMD_RUN", opts.systemd_run);
    argv.push_back("--unit=" + trial.unit);
    argv.push_back("--on-active=" + std::to_string(static_cast<long long>(seconds)));
    argv.insert(argv.end(), opts.revert_argv.begin(), opts.revert_argv.end());
    const int status = run_command(argv);
    if (status != 0) return "'" + join_command(argv) + "' failed (" + status_text(status) + ")";
    return "";
}

}  // namespace

LiveOptions live_options(const Config& config, std::vector<std::string> revert_argv) {
    LiveOptions lo;
    lo.profile = config.profile;
    lo.state = config.state;
    lo.checks_dir = config.checks_dir;
    lo.check_settings.default_timeout = std::chrono::seconds(config.check_timeout);
    lo.check_settings.sections = config.checks;
    lo.confirm_timeout = std::chrono::seconds(config.confirm_timeout);
    lo.watchdog_device = config.watchdog_device;
    lo.revert_argv = std::move(revert_argv);
    return lo;
}

LiveStartReport start_live_trial(Machine& machine, unsigned generation, const LiveOptions& opts,
                                 const OutputSink& sink) {
    auto lock = live_lock(opts.state);
    refuse_second_trial(opts.state);
    auto link = generation_link(opts.profile, generation);
    std::error_code ec;
    auto toplevel = std::filesystem::canonical(link, ec);
    if (ec) throw Error("generation " + std::to_string(generation) + " ('" + link.string() + "'): " + ec.message());
    std::filesystem::path current_system = opts.current_system;
    if (const char* env = std::getenv("NIXBOOT_CURRENT_SYSTEM"); env && *env) current_system = env;
    auto previous_toplevel = std::filesystem::canonical(current_system, ec);
    if (ec)
        throw Error("running system '" + current_system.string() + "': " + ec.message() +
                    "; cannot tell what a revert would restore");
    if (previous_toplevel == toplevel)
        throw Error("generation " + std::to_string(generation) + " is already the running system");
    if (!machine.status().view.find(entry_id(generation)))
        throw Error("generation " + std::to_string(generation) + " has no boot entry; run 'nixboot install' first");
    if (opts.revert_argv.empty()) throw Error("no revert command configured");

    LiveTrial trial;
    trial.generation = generation;
    trial.previous = generation_of_toplevel(opts.profile, previous_toplevel).value_or(0);
    trial.previous_toplevel = previous_toplevel;
    trial.boot_id = boot_id_or_empty(opts.boot_id_source);
    trial.started = journal_now();
    trial.deadline = trial.started + static_cast<std::time_t>(opts.confirm_timeout.count());
    trial.unit = "nixboot-live-revert-" + std::to_string(generation);
    trial.id = new_trial_id();

    // The revert timer exists before anything is activated.
    write_live(opts.state, trial);
    std::string timer_failure;
    try {
        timer_failure = start_timer(opts, trial, static_cast<std::time_t>(opts.confirm_timeout.count()));
    } catch (const Error& e) {
        remove_live(opts.state);
        rethrow_with_context(e, "starting the revert timer (nothing activated)");
    }
    if (!timer_failure.empty()) {
        remove_live(opts.state);
        throw Error("starting the revert timer: " + timer_failure + "; nothing activated");
    }
    journal(opts.state, JournalEvent::live_start, generation, trial.boot_id,
            "live trial " + trial.id + ", confirm within " + std::to_string(opts.confirm_timeout.count()) +
                " s (until " + date_text(trial.deadline) + ")");

    LiveStartReport report;
    report.trial = trial;
    auto revert_now = [&](const std::string& reason) {
        trial.status = LiveStatus::reverting;
        write_live(opts.state, trial);
        std::string failure = finish_revert(machine, opts, trial, reason, Activate::yes);
        report.reverted = true;
        report.reason = reason + (failure.empty() ? "" : "; " + failure);
        report.trial = trial;
    };
    if (std::string failure = activate(toplevel); !failure.empty()) {
        revert_now("activating generation " + std::to_string(generation) + ": " + failure);
        return report;
    }
    CheckDiscovery discovery;
    try {
        discovery = discover_checks(opts.checks_dir, opts.check_settings);
    } catch (const Error& e) {
        revert_now(e.what());
        return report;
    }
    report.refused = discovery.refused;
    report.checks = run_checks(discovery.checks, sink);
    Decision decision = decide(report.checks, report.refused);
    if (decision.verdict == Verdict::bad)
        revert_now("live trial of generation " + std::to_string(generation) + ": " + decision.reason);
    return report;
}

std::string no_confirm_reason(const LiveTrial& trial) {
    return "trial boot of generation " + std::to_string(trial.generation) + ": no confirmation from outside within " +
           std::to_string(trial.deadline - trial.started) + " s";
}

ConfirmTrialReport arm_confirm_trial(Machine& machine, unsigned generation, TryOptions try_options,
                                     const LiveOptions& opts) {
    if (opts.revert_argv.empty()) throw Error("no revert command configured");
    auto lock = live_lock(opts.state);
    refuse_second_trial(opts.state);
    if (!machine.status().view.find(entry_id(generation)))
        throw Error("generation " + std::to_string(generation) + " has no boot entry; run 'nixboot install' first");

    LiveTrial trial;
    trial.kind = TrialKind::reboot;
    trial.status = LiveStatus::armed;
    trial.generation = generation;
    trial.boot_id = boot_id_or_empty(opts.boot_id_source);
    trial.started = journal_now();
    trial.unit = "nixboot-confirm-revert-" + std::to_string(generation);
    trial.id = new_trial_id();
    trial.window = static_cast<unsigned>(opts.confirm_timeout.count());

    // Recorded before the trial is armed: an armed trial without this record
    // would be promoted by its checks alone.
    write_live(opts.state, trial);
    ConfirmTrialReport report;
    try_options.reboot = Reboot::no;
    try_options.tries = 1;  // a reset in the window falls back, never boots the trial again
    try {
        report.armed = machine.try_generation(generation, try_options);
    } catch (const Error& e) {
        // Armed all the same (e.g. only its journal line failed): the record
        // stays, or the trial boot would be promoted by its checks alone.
        if (machine.status().view.armed == entry_id(generation))
            rethrow_with_context(e, "trial " + trial.id + " of generation " + std::to_string(generation) +
                                        " is armed and waits for 'nixboot confirm " + trial.id + "' on its trial boot");
        remove_live(opts.state);
        throw;
    } catch (...) {
        remove_live(opts.state);
        throw;
    }
    report.trial = trial;
    try {
        journal(opts.state, JournalEvent::live_start, generation, trial.boot_id,
                "trial " + trial.id + ", after a reboot: confirm within " + std::to_string(trial.window) +
                    " s once its checks pass on the trial boot");
    } catch (const Error& e) {
        rethrow_with_context(e, "trial " + trial.id + " of generation " + std::to_string(generation) +
                                    " is armed and waits for 'nixboot confirm " + trial.id +
                                    "' on its trial boot; journaling it");
    }
    return report;
}

std::optional<LiveTrial> open_confirm_window(const LiveOptions& opts, unsigned generation, std::chrono::seconds limit) {
    auto lock = live_lock(opts.state);
    auto trial = read_live_trial(opts.state);
    if (!trial || trial->kind != TrialKind::reboot || trial->generation != generation ||
        trial->status != LiveStatus::armed)
        return std::nullopt;
    const auto window = std::max<std::time_t>(1, std::min<std::time_t>(trial->window, limit.count()));
    trial->status = LiveStatus::running;
    trial->boot_id = boot_id_or_empty(opts.boot_id_source);
    trial->started = journal_now();
    trial->deadline = trial->started + window;
    // Recorded before the timer starts: a confirm may come the moment it runs,
    // and a re-run of the check in this boot must not decide again.
    write_live(opts.state, *trial);
    std::string failure;
    try {
        failure = start_timer(opts, *trial, window);
    } catch (const Error& e) {
        failure = e.what();
    }
    if (!failure.empty()) throw Error("starting the confirm timer: " + failure);
    return trial;
}

LiveTrial confirm_live_trial(Machine& machine, const LiveOptions& opts, const std::optional<std::string>& id) {
    if (id && !is_trial_id(*id)) throw UsageError("confirm: '" + *id + "' is not a trial ID (32 hex digits)");
    // Nothing running: refused before the lock file is created (nothing changed).
    std::optional<Lock> lock;
    auto trial = read_live_trial(opts.state);
    if (trial) {
        lock.emplace(live_lock(opts.state));
        trial = read_live_trial(opts.state);
    }
    if (!trial) {
        if (id) throw Error("no trial waits for a confirmation: " + ended_how(opts.state, *id));
        throw Error("no trial waits for a confirmation (no live trial runs, no trial boot waits)");
    }
    if (id && trial->id != *id)
        throw Error("this confirm names trial " + *id + ", but the " +
                    (trial->kind == TrialKind::live ? "running live trial" : "trial waiting for a confirmation") +
                    " (generation " + std::to_string(trial->generation) + ") is " +
                    (trial->id.empty() ? "one without an ID" : trial->id) + "; nothing confirmed");
    const std::string what = trial->kind == TrialKind::live
                                 ? "the live trial of generation " + std::to_string(trial->generation)
                                 : "trial " + trial->id + " of generation " + std::to_string(trial->generation);
    if (trial->status == LiveStatus::reverting) throw Error(what + " is being reverted");
    if (trial->kind == TrialKind::reboot && trial->status == LiveStatus::armed)
        throw Error("trial " + trial->id + " of generation " + std::to_string(trial->generation) +
                    " has not passed its checks on its trial boot yet; nothing confirmed");
    if (trial->kind == TrialKind::reboot && trial->status == LiveStatus::running &&
        trial->boot_id != boot_id_or_empty(opts.boot_id_source))
        throw Error("trial " + trial->id + " of generation " + std::to_string(trial->generation) +
                    " was cut short by a reboot; the next check marks it bad; nothing confirmed");
    if (trial->status == LiveStatus::running) {
        if (journal_now() > trial->deadline)
            throw Error(what + " passed its confirm deadline (" + date_text(trial->deadline) +
                        "); it is being reverted");
        trial->status = LiveStatus::confirmed;
        write_live(opts.state, *trial);
    }
    finish_confirm(machine, opts, *trial);
    return *trial;
}

std::optional<LiveTrial> revert_live_trial(Machine& machine, const LiveOptions& opts, std::string_view reason,
                                           Activate activation) {
    auto lock = live_lock(opts.state);
    auto trial = read_live_trial(opts.state);
    if (!trial) return std::nullopt;
    if (trial->status == LiveStatus::confirmed) {
        finish_confirm(machine, opts, *trial);  // the confirm won; finish it
        return std::nullopt;
    }
    if (trial->status == LiveStatus::running || trial->status == LiveStatus::armed) {
        trial->status = LiveStatus::reverting;
        write_live(opts.state, *trial);
    }
    // A revert a human's verb recorded keeps its reason.
    std::string failure =
        finish_revert(machine, opts, *trial, trial->reason.empty() ? reason : trial->reason, activation);
    if (!failure.empty())
        throw Error("generation " + std::to_string(trial->generation) + " marked bad, but re-activating generation " +
                    std::to_string(trial->previous) + " failed: " + failure);
    return trial;
}

std::string trial_text(const LiveTrial& trial) {
    const std::string gen = "generation " + std::to_string(trial.generation);
    if (trial.kind == TrialKind::live)
        return "the live trial " + (trial.id.empty() ? std::string() : trial.id + " ") + "of " + gen;
    return "trial " + trial.id + " of " + gen;
}

namespace {

// One line, bounded: STATE/live is read with a 4096-byte limit.
std::string record_reason(std::string_view verb, std::string_view reason) {
    std::string r = "settled by 'nixboot " + std::string(verb) + "': " + std::string(reason);
    std::replace(r.begin(), r.end(), '\n', ' ');
    if (r.size() > 1000) r.resize(1000);
    return r;
}

// The record, read under STATE/live.lock, if one is there at all (no lock
// file is created when none is).
std::optional<LiveTrial> locked_trial(const LiveOptions& opts, std::optional<Lock>& lock) {
    if (!read_live_trial(opts.state)) return std::nullopt;
    lock.emplace(live_lock(opts.state));
    return read_live_trial(opts.state);
}

void settle_good(Machine& machine, const LiveOptions& opts, LiveTrial& trial, std::string reason) {
    trial.status = LiveStatus::confirmed;
    trial.reason = std::move(reason);
    write_live(opts.state, trial);  // whoever comes next finishes this confirm
    finish_confirm(machine, opts, trial);
}

void settle_bad(Machine& machine, const LiveOptions& opts, LiveTrial& trial, std::string reason) {
    trial.status = LiveStatus::reverting;
    trial.reason = std::move(reason);
    write_live(opts.state, trial);  // whoever comes next finishes this revert
    // A live trial still active in this boot is switched back, as its timer would.
    const Activate activation = trial.boot_id == boot_id_or_empty(opts.boot_id_source) ? Activate::yes : Activate::no;
    std::string failure = finish_revert(machine, opts, trial, trial.reason, activation);
    if (!failure.empty())
        throw Error("generation " + std::to_string(trial.generation) + " marked bad, but re-activating generation " +
                    std::to_string(trial.previous) + " failed: " + failure);
}

}  // namespace

std::optional<std::string> drop_unarmed_trial(Machine& machine, const LiveOptions& opts) {
    std::optional<Lock> lock;
    auto trial = locked_trial(opts, lock);
    if (!trial || trial->kind != TrialKind::reboot || trial->status != LiveStatus::armed) return std::nullopt;
    const std::string entry = entry_id(trial->generation);
    if (machine.status().view.armed == entry) return std::nullopt;
    for (const auto& r : read_journal(opts.state).records)
        if (r.event == JournalEvent::arm && r.entry == entry && r.time >= trial->started) return std::nullopt;
    const std::string gen = std::to_string(trial->generation);
    std::string reason = trial_text(*trial) +
                         " was never armed ('nixboot try' was interrupted between recording it "
                         "and arming it); generation " +
                         gen + " never booted and is left as it was";
    journal(opts.state, JournalEvent::live_revert, trial->generation, boot_id_or_empty(opts.boot_id_source), reason);
    remove_live(opts.state);
    return reason;
}

std::optional<LiveTrial> mark_good_settling(Machine& machine, const LiveOptions& opts, std::string_view entry,
                                            std::string_view reason) {
    std::optional<Lock> lock;
    auto trial = locked_trial(opts, lock);
    if (!trial || entry_id(trial->generation) != entry) {
        machine.mark_good(entry, reason);
        return std::nullopt;
    }
    settle_good(machine, opts, *trial, record_reason("mark-good", reason));
    return trial;
}

std::optional<LiveTrial> mark_bad_settling(Machine& machine, const LiveOptions& opts, std::string_view entry,
                                           std::string_view reason) {
    std::optional<Lock> lock;
    auto trial = locked_trial(opts, lock);
    if (!trial || entry_id(trial->generation) != entry) {
        machine.mark_bad(entry, reason);
        return std::nullopt;
    }
    // Refused as Machine::mark_bad refuses (nothing changed), before the record moves.
    if (const Entry* e = machine.status().view.find(entry); !e)
        throw Error("no entry '" + std::string(entry) + "' to mark bad");
    settle_bad(machine, opts, *trial, record_reason("mark-bad", reason));
    return trial;
}

RollbackSettling rollback_settling(Machine& machine, const LiveOptions& opts, std::string_view reason) {
    std::optional<Lock> lock;
    auto trial = locked_trial(opts, lock);
    RollbackSettling r;
    r.entry = machine.rollback(reason);
    if (!trial) return r;
    const std::string why = record_reason("rollback", reason.empty() ? "rolled back by hand" : reason);
    r.settled_good = entry_id(trial->generation) == r.entry;
    if (r.settled_good)
        settle_good(machine, opts, *trial, why);
    else
        settle_bad(machine, opts, *trial, why);
    r.settled = trial;
    return r;
}

}  // namespace nixboot::health
