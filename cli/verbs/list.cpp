// nixboot list: every entry and its state, in the loader's menu order.
#include "cli/verbs.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <ostream>

namespace nixboot::cli {

nlohmann::json entry_json(const Entry& e) {
    return nlohmann::json{
        {"id", e.id},
        {"generation", e.generation},
        {"specialisation", e.specialisation.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.specialisation)},
        {"state", std::string(to_string(e.state))},
        {"tries_left", e.tries_left},
        {"tries_done", e.tries_done},
        {"file", e.file},
        {"title", e.title},
        {"version", e.version}};
}

namespace {

int run_list(Context& ctx, const po::variables_map&) {
    auto v = ctx.machine().status().view;
    if (ctx.format == Format::json) {
        auto arr = nlohmann::json::array();
        for (const auto& e : v.entries) {
            auto j = entry_json(e);
            j["default"] = v.persistent_default == e.id;
            j["booted"] = v.booted == e.id;
            j["armed"] = v.armed == e.id;
            arr.push_back(j);
        }
        ctx.out << arr.dump() << "\n";
        return 0;
    }
    char line[512];
    std::snprintf(line, sizeof line, "%-6s %-8s %-7s %-40s %s\n", "GEN", "STATE", "TRIES", "ENTRY", "FLAGS");
    ctx.out << line;
    for (const auto& e : v.entries) {
        std::string tries =
            e.state == EntryState::good ? "-" : std::to_string(e.tries_left) + "/" + std::to_string(e.tries_done);
        std::string flags;
        if (v.persistent_default == e.id) flags += "default ";
        if (v.booted == e.id) flags += "booted ";
        if (v.armed == e.id) flags += "armed ";
        std::snprintf(line, sizeof line, "%-6u %-8s %-7s %-40s %s\n", e.generation,
                      std::string(to_string(e.state)).c_str(), tries.c_str(), e.id.c_str(), flags.c_str());
        ctx.out << line;
    }
    for (const auto& w : v.warnings) spdlog::warn("{}", w);
    return 0;
}

VerbRegistration reg{Verb{"list", "", "every generation and its state", 50, nullptr, run_list}};

}  // namespace
}  // namespace nixboot::cli
