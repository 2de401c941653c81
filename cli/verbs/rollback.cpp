// nixboot rollback: make the previous good generation the default.
#include "cli/verbs.hpp"

#include "boot/health/live.hpp"

#include <ostream>

namespace nixboot::cli {
namespace {

int run_rollback(Context& ctx, const po::variables_map& vm) {
    auto lo = health::live_options(ctx.config, {});
    if (vm.count("run")) lo.run = vm["run"].as<std::string>();
    auto r = health::rollback_settling(ctx.machine(), lo, vm.count("reason") ? vm["reason"].as<std::string>() : "");
    ctx.out << "default is now " << r.entry << "\n";
    if (r.settled)
        ctx.out << health::trial_text(*r.settled) << " is settled: "
                << (r.settled_good ? "confirmed by this rollback (its generation is the default now)"
                                   : "reverted by this rollback")
                << "\n";
    return 0;
}

VerbRegistration reg{Verb{"rollback", "[--reason TEXT]", "make the previous good generation the default", 80,
                          [](po::options_description& d, po::positional_options_description&) {
                              d.add_options()("reason", po::value<std::string>()->value_name("TEXT"),
                                              "why, for the journal")(
                                  "run", po::value<std::string>()->value_name("DIR"),
                                  "the /run directory holding nixboot/verdict, for a trial boot's verdict (default "
                                  "/run)");
                          },
                          run_rollback, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
