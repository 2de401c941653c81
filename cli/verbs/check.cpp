// nixboot check: the late health check (nixboot-check.service). Runs the
// checks; on a trial boot decides good (promote) or bad (mark bad, reboot
// into the default unless on-failure=stay); on other boots only reports.
#include "cli/verbs.hpp"

#include "boot/util/process.hpp"
#include "boot/health/verdict.hpp"
#include "boot/util/error.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <ostream>
#include <thread>

namespace nixboot::cli {
namespace {

constexpr std::chrono::minutes check_lock_wait{5};

std::string utc_text(std::time_t t) {
    std::tm tm{};
    char buf[32] = "?";
    if (::gmtime_r(&t, &tm)) std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// --until-verdict (nixboot-check.service): a trial boot that waits for a
// confirmation from outside keeps the check running until the confirmation
// promoted it or the revert marked it bad. boot-complete.target, which the
// check is required by and systemd-bless-boot waits for, is reached only
// then: before, systemd-bless-boot blessed the trial's entry while nobody had
// confirmed it (VM scenario systemd-boot:11, once the VM's ESP was a GPT
// partition bless-boot could find). Bounded: the deadline (at most
// verdict-timeout after boot) and two minutes for the revert to run. Exit 0
// if the entry is good then, 1 if not.
int wait_for_verdict(Context& ctx, const std::filesystem::path& state, const std::string& entry,
                     const health::LiveTrial& awaiting) {
    ctx.out << std::flush;
    const std::time_t give_up = awaiting.deadline + 120;
    for (;;) {
        auto now = health::read_live_trial(state);
        if (!now || now->id != awaiting.id || std::time(nullptr) > give_up) break;
        std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    const auto view = ctx.backend().read();
    const Entry* e = view.find(entry);
    const bool good = e && e->state == EntryState::good;
    if (ctx.format != Format::json)
        ctx.out << entry << (good ? " was confirmed: it is good" : " was not confirmed: it is not good") << "\n"
                << std::flush;
    return good ? 0 : 1;
}

int run_check(Context& ctx, const po::variables_map& vm) {
    health::BootCheckOptions bo;
    if (vm.count("run")) bo.run = vm["run"].as<std::string>();
    if (vm.count("cmdline")) bo.cmdline = vm["cmdline"].as<std::string>();
    if (vm.count("uptime")) bo.uptime = vm["uptime"].as<std::string>();
    bo.efivars = ctx.config.efivars;
    bo.checks_dir = ctx.config.checks_dir;
    bo.check_settings.default_timeout = std::chrono::seconds(ctx.config.check_timeout);
    bo.check_settings.sections = ctx.config.checks;
    bo.verdict_timeout = std::chrono::seconds(ctx.config.verdict_timeout);
    bo.stability_window = std::chrono::seconds(ctx.config.stability_window);
    bo.on_failure = ctx.config.on_failure;
    bo.watchdog_device = ctx.config.watchdog_device;
    std::vector<std::string> revert{ctx.self};
    revert.insert(revert.end(), ctx.global_args.begin(), ctx.global_args.end());
    revert.push_back("live-revert");
    revert.push_back("--run");
    revert.push_back(bo.run.string());
    bo.live = health::live_options(ctx.config, revert);
    bo.live.run = bo.run;

    bool json = ctx.format == Format::json;
    auto sink = [&](std::string_view line) {
        if (!json) ctx.out << line << "\n" << std::flush;
    };
    // Unattended at boot: a command holding the lock (an install started at
    // the same time) is waited for, not a reason to lose the verdict and leave
    // the watchdog armed. Bounded well inside the unit's TimeoutStartSec.
    ctx.lock_wait = check_lock_wait;
    health::BootCheckReport r = health::run_boot_check(ctx.machine(), bo, sink);

    const auto& rec = r.record;
    bool trial = rec.trial == health::TrialBoot::yes && !rec.entry.empty();
    std::vector<std::string> reboot_cmd =
        command_from_env("NIXBOOT_REBOOT_COMMAND", ctx.machine_options().reboot_command);
    if (json) {
        nlohmann::json j;
        j["entry"] = rec.entry;
        j["trial"] = trial;
        j["record"] = r.source == health::RecordSource::stage1 ? "stage1" : "recomputed";
        j["checks"] = nlohmann::json::array();
        for (const auto& c : r.results)
            j["checks"].push_back({{"name", c.name},
                                   {"kind", health::to_string(c.kind)},
                                   {"outcome", health::to_string(c.outcome)},
                                   {"detail", c.detail},
                                   {"ms", c.duration.count()}});
        for (const auto& c : r.refused)
            j["checks"].push_back({{"name", c.name},
                                   {"kind", health::to_string(c.kind)},
                                   {"outcome", "refused"},
                                   {"detail", c.reason},
                                   {"ms", 0}});
        j["verdict"] = r.decision ? nlohmann::json(health::to_string(r.decision->verdict)) : nlohmann::json(nullptr);
        j["awaiting_confirm"] = r.awaiting ? nlohmann::json{{"trial_id", r.awaiting->id},
                                                            {"generation", r.awaiting->generation},
                                                            {"deadline", r.awaiting->deadline}}
                                           : nlohmann::json(nullptr);
        j["reason"] = r.decision ? r.decision->reason : "";
        j["settled"] = r.settled;
        j["finished"] = r.finished;
        j["notes"] = r.notes;
        j["reboot"] = r.reboot;
        j["rolled_back"] = r.rolled_back ? nlohmann::json(describe_rollback(*r.rolled_back)) : nlohmann::json(nullptr);
        ctx.out << j.dump() << "\n";
    } else {
        for (const auto& n : r.notes) ctx.out << "note: " << n << "\n";
        for (const auto& f : r.finished)
            ctx.out << "promoted " << f << ": finished the promotion a power cut interrupted on an earlier boot\n";
        for (const auto& s : r.settled) ctx.out << "marked bad: " << s << "\n";
        for (const auto& c : r.refused)
            ctx.out << c.name << " (" << health::to_string(c.kind) << "): refused '" << c.path.string()
                    << "': " << c.reason << "\n";
        for (const auto& c : r.results) ctx.out << health::describe(c) << "\n";
        if (!trial) {
            ctx.out << (rec.entry.empty() ? std::string("this boot") : rec.entry) << " is not a trial: "
                    << (r.healthy ? "all required checks passed" : "a required check did not pass")
                    << " (reported only)\n";
        } else if (r.awaiting) {
            ctx.out << rec.entry << " passed its checks" << (r.resumed ? " (earlier in this boot)" : "")
                    << " and waits for a confirmation from outside: run "
                    << "'nixboot confirm " << r.awaiting->id << "' within "
                    << (r.awaiting->deadline - r.awaiting->started) << " s (by " << utc_text(r.awaiting->deadline)
                    << "), or it is marked bad and the machine reboots into the default\n";
        } else {
            ctx.out << "verdict on " << rec.entry << ": " << health::to_string(r.decision->verdict)
                    << (r.resumed ? " (decided earlier in this boot)" : "") << ": " << r.decision->reason << "\n";
            if (r.decision->verdict == health::Verdict::good)
                ctx.out << rec.entry << " is good and the default\n";
            else
                ctx.out << rec.entry << " is marked bad"
                        << (r.reboot ? "; rebooting into the default: " + join_command(reboot_cmd)
                                     : "; staying (on-failure=stay)")
                        << "\n";
        }
    }
    if (r.rolled_back) {
        // Once per rollback: users hang their notification (mail, a webhook)
        // on the target; a failed start is tried again at the next check.
        auto start =
            program_from_env("NIXBOOT_SYSTEMCTL", {"systemctl", "start", "--no-block", "nixboot-rolled-back.target"});
        if (!json) ctx.out << "rolled back: " << describe_rollback(*r.rolled_back) << "\n";
        std::string failure;
        try {
            const int status = run_command(start);
            if (status != 0) failure = "exit status " + std::to_string(status);
        } catch (const Error& e) {
            failure = e.what();
        }
        if (failure.empty())
            health::announce_rollback(ctx.machine_options().state, *r.rolled_back);
        else
            spdlog::warn("'{}' failed ({}); the next check tries again", join_command(start), failure);
    }
    if (r.awaiting && vm.count("until-verdict")) return wait_for_verdict(ctx, bo.live.state, rec.entry, *r.awaiting);
    ctx.out << std::flush;
    if (r.reboot) {
        int status = run_command(reboot_cmd);
        if (status != 0)
            throw Error("reboot command '" + join_command(reboot_cmd) + "' failed (exit status " +
                        std::to_string(status) + ")");
    }
    return r.healthy ? 0 : 1;
}

VerbRegistration reg{Verb{"check", "[--run DIR] [--cmdline FILE] [--uptime FILE] [--until-verdict]",
                          "run the health checks; on a trial boot promote it or mark it bad and reboot", 60,
                          [](po::options_description& d, po::positional_options_description&) {
                              d.add_options()("run", po::value<std::string>()->value_name("DIR"),
                                              "the /run directory holding nixboot/boot (default /run)")(
                                  "cmdline", po::value<std::string>()->value_name("FILE"),
                                  "kernel command line (default /proc/cmdline)")(
                                  "uptime", po::value<std::string>()->value_name("FILE"),
                                  "uptime source for the verdict timeout (default /proc/uptime)")(
                                  "until-verdict",
                                  "on a trial boot waiting for a confirmation, return only once it is confirmed "
                                  "(exit 0) or reverted (exit 1)");
                          },
                          run_check, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
