// nixboot rollback: make the previous good generation the default.
#include "cli/verbs.hpp"

#include <ostream>

namespace nixboot::cli {
namespace {

int run_rollback(Context& ctx, const po::variables_map& vm) {
    auto id = ctx.machine().rollback(vm.count("reason") ? vm["reason"].as<std::string>() : "");
    ctx.out << "default is now " << id << "\n";
    return 0;
}

VerbRegistration reg{Verb{"rollback", "[--reason TEXT]", "make the previous good generation the default", 80,
                          [](po::options_description& d, po::positional_options_description&) {
                              d.add_options()("reason", po::value<std::string>()->value_name("TEXT"),
                                              "why, for the journal");
                          },
                          run_rollback, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
