// nixboot mark-good [GEN]: promote an entry (the booted one by default).
#include "cli/verbs.hpp"

#include "boot/health/live.hpp"
#include "boot/util/error.hpp"

#include <ostream>

namespace nixboot::cli {
namespace {

int run_mark_good(Context& ctx, const po::variables_map& vm) {
    std::string id;
    if (vm.count("entry")) {
        id = entry_argument(vm["entry"].as<std::string>());
    } else {
        auto b = ctx.machine().booted_entry();
        if (!b) throw Error("mark-good: no GEN given and the loader did not say which entry booted");
        id = *b;
    }
    auto lo = health::live_options(ctx.config, {});
    if (vm.count("run")) lo.run = vm["run"].as<std::string>();
    auto settled = health::mark_good_settling(
        ctx.machine(), lo, id, vm.count("reason") ? vm["reason"].as<std::string>() : "marked good by hand");
    ctx.out << id << " is good and the default\n";
    if (settled) ctx.out << health::trial_text(*settled) << " is settled: confirmed by this mark-good\n";
    return 0;
}

VerbRegistration reg{
    Verb{"mark-good", "[GEN] [--reason TEXT]", "mark GEN (default: the booted entry) good and make it the default", 70,
         [](po::options_description& d, po::positional_options_description& p) {
             d.add_options()("entry", po::value<std::string>()->value_name("GEN"), "generation number or entry ID")(
                 "reason", po::value<std::string>()->value_name("TEXT"), "why, for the journal")(
                 "run", po::value<std::string>()->value_name("DIR"),
                 "the /run directory holding nixboot/verdict, for a trial boot's verdict (default /run)");
             p.add("entry", 1);
         },
         run_mark_good, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
