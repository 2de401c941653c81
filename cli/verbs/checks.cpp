// nixboot checks: list the built-in checks and the configured ones.
#include "cli/verbs.hpp"

#include "boot/health/checks.hpp"
#include "boot/util/error.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <fstream>
#include <ostream>

namespace nixboot::cli {
namespace {

// The first "# nixboot-check: TEXT" line of a built-in check.
std::string description_of(const std::filesystem::path& file) {
    std::ifstream in(file);
    std::string line;
    for (int i = 0; i < 20 && std::getline(in, line); ++i) {
        constexpr std::string_view tag = "# nixboot-check: ";
        if (line.rfind(tag, 0) == 0) return line.substr(tag.size());
    }
    return "";
}

std::filesystem::path builtin_dir(const Context& ctx, const po::variables_map& vm) {
    if (vm.count("builtin-dir")) return vm["builtin-dir"].as<std::string>();
    if (const char* env = std::getenv("NIXBOOT_BUILTIN_CHECKS"); env && *env) return env;
    return std::filesystem::path(ctx.self).parent_path().parent_path() / "libexec" / "nixboot" / "checks";
}

int run_checks_verb(Context& ctx, const po::variables_map& vm) {
    auto builtins = builtin_dir(ctx, vm);
    std::vector<std::pair<std::string, std::string>> listed;
    std::error_code ec;
    if (std::filesystem::is_directory(builtins, ec))
        for (const auto& e : std::filesystem::directory_iterator(builtins))
            listed.emplace_back(e.path().filename().string(), description_of(e.path()));
    std::sort(listed.begin(), listed.end());

    health::CheckSettings settings;
    settings.default_timeout = std::chrono::seconds(ctx.config.check_timeout);
    settings.sections = ctx.config.checks;
    health::CheckDiscovery d = health::discover_checks(ctx.config.checks_dir, settings);

    if (ctx.format == Format::json) {
        nlohmann::json j;
        j["builtin_dir"] = builtins.string();
        j["builtin"] = nlohmann::json::array();
        for (const auto& [name, desc] : listed) j["builtin"].push_back({{"name", name}, {"description", desc}});
        j["checks_dir"] = ctx.config.checks_dir.string();
        j["configured"] = nlohmann::json::array();
        for (const auto& c : d.checks)
            j["configured"].push_back({{"name", c.name},
                                       {"kind", health::to_string(c.kind)},
                                       {"path", c.path.string()},
                                       {"timeout", c.timeout.count() / 1000}});
        for (const auto& c : d.refused)
            j["configured"].push_back({{"name", c.name},
                                       {"kind", health::to_string(c.kind)},
                                       {"path", c.path.string()},
                                       {"refused", c.reason}});
        j["ignored"] = d.ignored;
        ctx.out << j.dump() << "\n";
        return 0;
    }
    ctx.out << "built-in checks (" << builtins.string() << "), off unless linked or wrapped in the checks directory:\n";
    if (listed.empty()) ctx.out << "  (none found)\n";
    for (const auto& [name, desc] : listed) ctx.out << "  " << name << (desc.empty() ? "" : " - " + desc) << "\n";
    ctx.out << "configured checks (" << ctx.config.checks_dir.string() << "):\n";
    if (d.checks.empty() && d.refused.empty()) ctx.out << "  (none)\n";
    for (const auto& c : d.checks)
        ctx.out << "  " << health::to_string(c.kind) << "/" << c.name << " timeout " << c.timeout.count() / 1000
                << " s\n";
    for (const auto& c : d.refused)
        ctx.out << "  " << health::to_string(c.kind) << "/" << c.name << " REFUSED: " << c.reason << "\n";
    for (const auto& line : d.ignored) spdlog::warn("{}", line);
    return d.refused.empty() ? 0 : 1;
}

VerbRegistration reg{Verb{"checks", "[--builtin-dir DIR]", "list the built-in and the configured health checks", 61,
                          [](po::options_description& d, po::positional_options_description&) {
                              d.add_options()("builtin-dir", po::value<std::string>()->value_name("DIR"),
                                              "where the built-in checks are (default PREFIX/libexec/nixboot/checks)");
                          },
                          run_checks_verb}};

}  // namespace
}  // namespace nixboot::cli
