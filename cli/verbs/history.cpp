// nixboot history: the trial journal.
#include "cli/verbs.hpp"

#include "boot/journal.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <ctime>
#include <ostream>

namespace nixboot::cli {
namespace {

int run_history(Context& ctx, const po::variables_map&) {
    auto contents = read_journal(ctx.config.state);
    for (const auto& p : contents.problems) spdlog::warn("journal line {}: {}", p.line, p.message);
    if (ctx.format == Format::json) {
        auto arr = nlohmann::json::array();
        for (const auto& r : contents.records) arr.push_back(nlohmann::json::parse(format_journal_line(r)));
        ctx.out << arr.dump() << "\n";
        return 0;
    }
    for (const auto& r : contents.records) {
        char when[32] = "?";
        std::tm tm{};
        if (gmtime_r(&r.time, &tm)) std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        ctx.out << when << "  " << to_string(r.event);
        if (r.generation) ctx.out << "  generation " << *r.generation;
        if (!r.entry.empty()) ctx.out << "  " << r.entry;
        if (!r.reason.empty()) ctx.out << "  " << r.reason;
        ctx.out << "\n";
    }
    return 0;
}

VerbRegistration reg{Verb{"history", "", "the trial journal", 60, nullptr, run_history}};

}  // namespace
}  // namespace nixboot::cli
