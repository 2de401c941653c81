#include "boot/deploy/target_status.hpp"

#include "boot/util/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace nixboot::deploy {

namespace {

using nlohmann::json;

std::optional<std::string> optional_string(const json& j, const char* key) {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    return j[key].get<std::string>();
}

TargetEntry entry_of(const json& j) {
    return TargetEntry{j.at("id").get<std::string>(), j.at("generation").get<unsigned>(),
                       j.contains("specialisation") && !j["specialisation"].is_null(),
                       j.at("state").get<std::string>()};
}

TargetTrial trial_of(const json& j) {
    return TargetTrial{j.at("id").get<std::string>(),        j.at("generation").get<unsigned>(),
                       j.at("kind").get<std::string>(),      j.at("status").get<std::string>(),
                       j.at("awaiting_confirm").get<bool>(), j.at("confirm_timeout").get<unsigned>()};
}

TargetRollback rollback_of(const json& j) {
    TargetRollback r;
    if (j.contains("generation") && !j["generation"].is_null()) r.generation = j["generation"].get<unsigned>();
    r.reason = optional_string(j, "reason").value_or("");
    r.summary = optional_string(j, "summary").value_or("");
    return r;
}

const TargetEntry* entry_for(const TargetStatus& status, unsigned generation) {
    for (const auto& e : status.entries)
        if (e.generation == generation && !e.specialisation) return &e;
    return nullptr;
}

}  // namespace

TargetStatus parse_target_status(std::string_view text) {
    try {
        auto j = json::parse(text);
        TargetStatus out;
        out.default_entry = optional_string(j, "default");
        for (const auto& e : j.at("entries")) out.entries.push_back(entry_of(e));
        if (j.contains("live_trial") && !j["live_trial"].is_null()) out.trial = trial_of(j["live_trial"]);
        if (j.contains("rolled_back") && !j["rolled_back"].is_null()) out.rolled_back = rollback_of(j["rolled_back"]);
        return out;
    } catch (const json::exception& e) {
        throw Error(std::string("unreadable status: ") + e.what());
    }
}

std::optional<std::string> parse_trial_id(std::string_view text) {
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("trial_id") || !j["trial_id"].is_string())
        return std::nullopt;
    auto id = j["trial_id"].get<std::string>();
    const bool hex = id.size() == 32 && std::all_of(id.begin(), id.end(), [](char c) {
                         return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                     });
    return hex ? std::optional<std::string>(id) : std::nullopt;
}

std::optional<unsigned> newest_untried(const TargetStatus& status) {
    std::optional<unsigned> out;
    for (const auto& e : status.entries)
        if (!e.specialisation && e.state != "good" && e.state != "bad" && (!out || e.generation > *out))
            out = e.generation;
    return out;
}

std::optional<unsigned> default_generation(const TargetStatus& status) {
    if (!status.default_entry) return std::nullopt;
    for (const auto& e : status.entries)
        if (e.id == *status.default_entry) return e.generation;
    return std::nullopt;
}

Seen observe(const TargetStatus& status, unsigned generation, std::string_view trial_id) {
    const auto* entry = entry_for(status, generation);
    if (status.trial && status.trial->id == trial_id) {
        if (status.trial->awaiting_confirm) return Seen::awaiting_confirm;
        return Seen::pending;  // armed, confirmed or reverting: not finished yet
    }
    if (entry && entry->state == "good" && status.default_entry == entry->id) return Seen::promoted;
    if (entry && entry->state == "bad") return Seen::rolled_back;
    // A new trial or promotion ends the rollback status starts with: one of
    // this generation is this trial's.
    if (status.rolled_back && status.rolled_back->generation == generation) return Seen::rolled_back;
    return Seen::pending;
}

std::string rollback_reason(const TargetStatus& status, unsigned generation) {
    if (status.rolled_back && status.rolled_back->generation == generation) return status.rolled_back->reason;
    return "";
}

}  // namespace nixboot::deploy
