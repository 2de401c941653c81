// nixboot mark-bad [GEN]: mark an entry bad (the booted one by default).
#include "cli/verbs.hpp"

#include "boot/health/live.hpp"
#include "boot/util/error.hpp"

#include <ostream>

namespace nixboot::cli {
namespace {

// What the revert did to the running system (mark-bad never reboots: a human is there).
std::string reverted_how(const health::LiveTrial& trial) {
    if (trial.kind == health::TrialKind::live) return "reverted by this mark-bad, as its revert timer would have";
    if (trial.deadline == 0) return "cancelled by this mark-bad before its trial boot";
    return "reverted by this mark-bad; if this is its trial boot, reboot to return to the default";
}

int run_mark_bad(Context& ctx, const po::variables_map& vm) {
    std::string id;
    if (vm.count("entry")) {
        id = entry_argument(vm["entry"].as<std::string>());
    } else {
        auto b = ctx.machine().booted_entry();
        if (!b) throw Error("mark-bad: no GEN given and the loader did not say which entry booted");
        id = *b;
    }
    auto lo = health::live_options(ctx.config, {});
    if (vm.count("run")) lo.run = vm["run"].as<std::string>();
    auto settled = health::mark_bad_settling(
        ctx.machine(), lo, id, vm.count("reason") ? vm["reason"].as<std::string>() : "marked bad by hand");
    ctx.out << id << " is bad\n";
    if (settled) ctx.out << health::trial_text(*settled) << " is settled: " << reverted_how(*settled) << "\n";
    return 0;
}

VerbRegistration reg{
    Verb{"mark-bad", "[GEN] [--reason TEXT]", "mark GEN (default: the booted entry) bad; the default stays good", 71,
         [](po::options_description& d, po::positional_options_description& p) {
             d.add_options()("entry", po::value<std::string>()->value_name("GEN"), "generation number or entry ID")(
                 "reason", po::value<std::string>()->value_name("TEXT"), "why, for the journal")(
                 "run", po::value<std::string>()->value_name("DIR"),
                 "the /run directory holding nixboot/verdict, for a trial boot's verdict (default /run)");
             p.add("entry", 1);
         },
         run_mark_bad, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
