// nixboot confirm: accept the running live trial, or the reboot trial that
// waits for it (from a NEW connection).
// nixboot live-revert: what the revert timer runs when no confirm came.
#include "cli/verbs.hpp"

#include "boot/health/live.hpp"
#include "boot/util/process.hpp"
#include "boot/util/error.hpp"

#include <ostream>

namespace nixboot::cli {
namespace {

health::LiveOptions options_of(const Context& ctx, const po::variables_map& vm) {
    std::vector<std::string> revert{ctx.self};
    revert.insert(revert.end(), ctx.global_args.begin(), ctx.global_args.end());
    revert.push_back("live-revert");
    auto lo = health::live_options(ctx.config, revert);
    if (vm.count("run")) lo.run = vm["run"].as<std::string>();
    return lo;
}

int run_confirm(Context& ctx, const po::variables_map& vm) {
    auto lo = options_of(ctx, vm);
    std::optional<std::string> id;
    if (vm.count("trial")) id = vm["trial"].as<std::string>();
    health::LiveTrial trial;
    try {
        trial = health::confirm_live_trial(ctx.machine(), lo, id);
    } catch (const UsageError&) {
        throw;
    } catch (const Error& e) {
        throw Error(std::string("confirm: ") + e.what());
    }
    ctx.out << "generation " << trial.generation << " confirmed: it is good, the default and the system profile\n";
    return 0;
}

int run_live_revert(Context& ctx, const po::variables_map& vm) {
    auto lo = options_of(ctx, vm);
    auto running = health::read_live_trial(lo.state);
    if (!running) {
        ctx.out << "no trial to revert (already confirmed or reverted)\n";
        return 0;
    }
    // Only a trial boot that waits in this boot reboots; an armed trial that
    // has not booted yet is just marked bad (disarmed).
    const bool reboot_trial = running->kind == health::TrialKind::reboot;
    const bool reboot_now = reboot_trial && running->status != health::LiveStatus::armed &&
                            running->boot_id == current_boot_id(lo.boot_id_source);
    // A revert that mark-bad or rollback recorded keeps its reason.
    std::string reason = !running->reason.empty() ? running->reason
                         : vm.count("reason")     ? vm["reason"].as<std::string>()
                         : reboot_trial           ? health::no_confirm_reason(*running)
                                                  : "live trial of generation " + std::to_string(running->generation) +
                                              " was not confirmed within " +
                                              std::to_string(running->deadline - running->started) + " s";
    auto trial = health::revert_live_trial(ctx.machine(), lo, reason, health::Activate::yes);
    if (!trial) {
        ctx.out << "the trial was confirmed meanwhile; nothing reverted\n";
        return 0;
    }
    if (reboot_trial && !reboot_now) {
        ctx.out << "trial " << trial->id << ": generation " << trial->generation << " is marked bad (" << reason
                << "); it will not be booted\n";
        return 0;
    }
    if (reboot_trial) {
        // G6: back to the last good generation by itself, whatever on-failure says.
        auto reboot = command_from_env("NIXBOOT_REBOOT_COMMAND", ctx.machine_options().reboot_command);
        ctx.out << "generation " << trial->generation << " is marked bad (" << reason
                << "); rebooting into the default: " << join_command(reboot) << "\n"
                << std::flush;
        const int status = run_command(reboot);
        if (status != 0)
            throw Error("reboot command '" + join_command(reboot) + "' failed (exit status " + std::to_string(status) +
                        ")");
        return 0;
    }
    ctx.out << "reverted: generation " << trial->previous << " is active again, generation " << trial->generation
            << " is marked bad (" << reason << ")\n";
    return 0;
}

VerbRegistration confirm_reg{Verb{"confirm", "[TRIAL-ID]",
                                  "accept the running live trial, or the trial boot that waits for a confirm (run it "
                                  "from a new connection); with the ID that `try` printed, only that trial",
                                  25,
                                  [](po::options_description& d, po::positional_options_description& p) {
                                      d.add_options()("trial", po::value<std::string>()->value_name("TRIAL-ID"),
                                                      "the trial to confirm (32 hex digits)")(
                                          "run", po::value<std::string>()->value_name("DIR"),
                                          "the /run directory holding nixboot/verdict (default /run)");
                                      p.add("trial", 1);
                                  },
                                  run_confirm, Mutates::yes}};

VerbRegistration revert_reg{
    Verb{"live-revert", "[--reason TEXT]",
         "revert the running live trial or the trial that waits for a confirm (run by its timer)", 26,
         [](po::options_description& d, po::positional_options_description&) {
             d.add_options()("reason", po::value<std::string>()->value_name("TEXT"), "why, for the journal")(
                 "run", po::value<std::string>()->value_name("DIR"),
                 "the /run directory holding nixboot/verdict (default /run)");
         },
         run_live_revert, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
