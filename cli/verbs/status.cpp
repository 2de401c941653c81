// nixboot status: what booted, the trial state, the default, the one-shot.
#include "cli/verbs.hpp"

#include "boot/health/live.hpp"
#include "boot/journal.hpp"
#include "boot/util/error.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <ctime>
#include <ostream>

namespace nixboot::cli {

nlohmann::json entry_json(const Entry& e);  // list.cpp

namespace {

std::string utc(std::time_t t) {
    std::tm tm{};
    char buf[32] = "?";
    if (::gmtime_r(&t, &tm)) std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

nlohmann::json opt(const std::optional<std::string>& s) { return s ? nlohmann::json(*s) : nlohmann::json(nullptr); }

std::string describe(const LoaderView& v, const std::optional<std::string>& id) {
    if (!id) return "(none)";
    const auto* e = v.find(*id);
    if (!e) return *id + " (not a nixboot entry)";
    std::string s = *id + " (" + std::string(to_string(e->state));
    if (e->state == EntryState::trial) s += ", " + std::to_string(e->tries_left) + " left";
    return s + ")";
}

// A trial that booted with its last try reads "+0-N" (bad by its name) until
// its verdict; the journal tells the difference: armed, not yet judged.
bool verdict_pending(const Context& ctx, const LoaderView& v) {
    if (!v.booted) return false;
    const auto* e = v.find(*v.booted);
    if (!e || e->state == EntryState::good) return false;
    std::optional<JournalEvent> last;
    for (const auto& r : read_journal(ctx.config.state).records)
        if (r.entry == *v.booted && (r.event == JournalEvent::arm || r.event == JournalEvent::good ||
                                     r.event == JournalEvent::bad || r.event == JournalEvent::live_start))
            last = r.event;
    return last == JournalEvent::arm || last == JournalEvent::live_start;
}

int run_status(Context& ctx, const po::variables_map&) {
    auto st = ctx.machine().status();
    const auto& v = st.view;
    bool pending = verdict_pending(ctx, v);
    // Until the next trial or promotion, a machine that rolled back says so first.
    const auto rolled_back = last_rollback(read_journal(ctx.config.state).records);
    std::optional<health::LiveTrial> live;
    try {
        live = health::read_live_trial(ctx.config.state);
    } catch (const Error& e) {
        spdlog::warn("{}", e.what());  // status still shows everything else
    }
    if (ctx.format == Format::json) {
        nlohmann::json j;
        j["rolled_back"] = nullptr;
        if (rolled_back)
            j["rolled_back"] = {{"event", to_string(rolled_back->event)},
                                {"generation", rolled_back->generation ? nlohmann::json(*rolled_back->generation)
                                                                       : nlohmann::json(nullptr)},
                                {"entry", rolled_back->entry},
                                {"reason", rolled_back->reason},
                                {"summary", describe_rollback(*rolled_back)}};
        j["live_trial"] = nullptr;
        if (live)
            j["live_trial"] = {
                {"id", live->id},
                {"generation", live->generation},
                {"kind", health::to_string(live->kind)},
                {"status", health::to_string(live->status)},
                {"awaiting_confirm", live->status == health::LiveStatus::running},
                {"confirm_timeout", live->kind == health::TrialKind::reboot
                                        ? live->window
                                        : static_cast<unsigned>(live->deadline - live->started)},
                {"deadline",
                 live->status == health::LiveStatus::armed ? nlohmann::json(nullptr) : nlohmann::json(live->deadline)}};
        j["bootloader"] = std::string(to_string(v.bootloader));
        j["loader_info"] = v.loader_info;
        j["booted"] = opt(v.booted);
        j["booted_file"] = opt(v.booted_file);
        j["default"] = opt(v.persistent_default);
        j["next_boot"] = opt(v.next_boot);
        j["armed"] = opt(v.armed);
        j["armed_mode"] =
            v.armed_mode ? nlohmann::json(std::string(to_string(*v.armed_mode))) : nlohmann::json(nullptr);
        j["vars_writable"] = v.vars_writable;
        j["verdict_pending"] = pending;
        j["profile_generation"] =
            st.profile_generation ? nlohmann::json(*st.profile_generation) : nlohmann::json(nullptr);
        j["entries"] = nlohmann::json::array();
        for (const auto& e : v.entries) j["entries"].push_back(entry_json(e));
        j["warnings"] = v.warnings;
        ctx.out << j.dump() << "\n";
        return 0;
    }
    auto& o = ctx.out;
    if (rolled_back) o << "rolled back: " << describe_rollback(*rolled_back) << "\n";
    o << "bootloader:  " << to_string(v.bootloader) << (v.loader_info.empty() ? "" : " (" + v.loader_info + ")")
      << "\n";
    o << "booted:      " << describe(v, v.booted) << (v.booted_file ? "  [" + *v.booted_file + "]" : "")
      << (pending ? "  trial boot, verdict pending" : "") << "\n";
    o << "default:     " << describe(v, v.persistent_default) << "\n";
    o << "next boot:   " << describe(v, v.next_boot) << "\n";
    if (v.armed)
        o << "trial:       " << describe(v, v.armed) << " armed "
          << (v.armed_mode == ArmMode::one_shot    ? "as a one-shot"
              : v.armed_mode == ArmMode::preferred ? "as the preferred entry (LoaderEntryPreferred)"
                                                   : "by sort order")
          << "\n";
    else
        o << "trial:       none armed\n";
    if (live && live->kind == health::TrialKind::reboot) {
        o << "confirm:     generation " << live->generation << " (trial " << live->id << ", ";
        if (live->status == health::LiveStatus::armed)
            o << "armed: waits " << live->window
              << " s for 'nixboot confirm' once its checks pass on the trial boot)\n";
        else if (live->status == health::LiveStatus::running)
            o << "awaiting confirm), confirm by " << utc(live->deadline) << "\n";
        else
            o << health::to_string(live->status) << ")\n";
    } else if (live)
        o << "live trial:  generation " << live->generation << " (" << health::to_string(live->status) << ", trial "
          << (live->id.empty() ? std::string("without an ID") : live->id) << "), confirm by " << utc(live->deadline)
          << "\n";
    o << "profile:     "
      << (st.profile_generation ? "generation " + std::to_string(*st.profile_generation) : "(unknown)") << "\n";
    o << "EFI vars:    " << (v.vars_writable ? "writable" : "not writable") << "\n";
    unsigned good = 0, trial = 0, bad = 0;
    for (const auto& e : v.entries) (e.state == EntryState::good ? good : e.state == EntryState::trial ? trial : bad)++;
    o << "entries:     " << v.entries.size() << " (" << good << " good, " << trial << " trial, " << bad << " bad)\n";
    for (const auto& w : v.warnings) spdlog::warn("{}", w);
    return 0;
}

VerbRegistration reg{
    Verb{"status", "", "what booted, trial state, tries left, default, one-shot", 40, nullptr, run_status}};

}  // namespace
}  // namespace nixboot::cli
