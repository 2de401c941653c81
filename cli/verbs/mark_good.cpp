// nixboot mark-good [GEN]: promote an entry (the booted one by default).
#include "cli/verbs.hpp"

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
    ctx.machine().mark_good(id, vm.count("reason") ? vm["reason"].as<std::string>() : "marked good by hand");
    ctx.out << id << " is good and the default\n";
    return 0;
}

VerbRegistration reg{
    Verb{"mark-good", "[GEN] [--reason TEXT]", "mark GEN (default: the booted entry) good and make it the default", 70,
         [](po::options_description& d, po::positional_options_description& p) {
             d.add_options()("entry", po::value<std::string>()->value_name("GEN"), "generation number or entry ID")(
                 "reason", po::value<std::string>()->value_name("TEXT"), "why, for the journal");
             p.add("entry", 1);
         },
         run_mark_good, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
