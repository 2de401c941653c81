#include "cli/verbs.hpp"

#include "boot/generations.hpp"
#include "boot/util/error.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace nixboot::cli {

namespace {
std::map<std::string, Verb>& registry() {
    static std::map<std::string, Verb> r;
    return r;
}
}  // namespace

void register_verb(Verb verb) {
    auto name = verb.name;
    registry()[name] = std::move(verb);
}

std::vector<const Verb*> verbs() {
    std::vector<const Verb*> out;
    for (const auto& [_, v] : registry()) out.push_back(&v);
    std::stable_sort(out.begin(), out.end(), [](const Verb* a, const Verb* b) { return a->order < b->order; });
    return out;
}

const Verb* find_verb(std::string_view name) {
    auto it = registry().find(std::string(name));
    return it == registry().end() ? nullptr : &it->second;
}

Backend& Context::backend() {
    if (!backend_) {
        BackendOptions bo;
        bo.esp = config.esp;
        bo.xbootldr = config.xbootldr;
        bo.efivars = config.efivars;
        bo.state = config.state;
        bo.extra = config.extra;
        backend_ = make_backend(config.bootloader, bo);
    }
    return *backend_;
}

MachineOptions Context::machine_options() const {
    MachineOptions mo;
    mo.profile = config.profile;
    mo.state = config.state;
    mo.tries = config.tries;
    mo.keep = config.keep;
    mo.lock_wait = lock_wait;
    return mo;
}

Machine& Context::machine() {
    if (!machine_) machine_ = std::make_unique<Machine>(backend(), machine_options());
    return *machine_;
}

unsigned generation_argument(std::string_view what, std::string_view text) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || p != text.data() + text.size() || v == 0)
        throw UsageError(std::string(what) + ": '" + std::string(text) + "' is not a generation number");
    if (v > max_generation)
        throw UsageError(std::string(what) + ": '" + std::string(text) + "' is above " +
                         std::to_string(max_generation) + ", the largest generation number nixboot installs");
    return v;
}

std::string entry_argument(std::string_view text) {
    if (parse_entry_id(text)) return std::string(text);
    return entry_id(generation_argument("GEN", text));
}

std::optional<std::string> write_access_refusal(const std::string& verb, const Config& config) {
    if (::geteuid() == 0) return std::nullopt;
    auto existing = [](std::filesystem::path p) {
        std::error_code ec;
        while (!p.empty() && !std::filesystem::exists(p, ec) && p.has_relative_path()) p = p.parent_path();
        return p;
    };
    auto profile_dir = config.profile.parent_path().empty() ? std::filesystem::path(".") : config.profile.parent_path();
    for (const auto& target : {config.esp, existing(config.state), profile_dir}) {
        if (::faccessat(AT_FDCWD, target.c_str(), W_OK, AT_EACCESS) == 0) continue;
        return verb + ": must be run as root: '" + target.string() + "' is not writable by uid " +
               std::to_string(::geteuid()) + "; nothing changed";
    }
    return std::nullopt;
}

std::string verb_help(const Verb& verb) {
    po::options_description desc("Options of '" + verb.name + "'");
    po::positional_options_description pos;
    if (verb.options) verb.options(desc, pos);
    std::ostringstream out;
    out << "Usage: nixboot [GLOBAL OPTIONS] " << verb.name << (verb.synopsis.empty() ? "" : " ") << verb.synopsis
        << "\n\n"
        << verb.summary << "\n";
    if (!desc.options().empty()) out << "\n" << desc;
    return out.str();
}

}  // namespace nixboot::cli
