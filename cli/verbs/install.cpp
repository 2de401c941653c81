// nixboot install: sync the bootloader's entries with the profile's generations.
#include "cli/verbs.hpp"

#include "boot/grub/backend.hpp"
#include "boot/util/process.hpp"
#include "boot/util/error.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <ostream>

namespace nixboot::cli {
namespace {

// The bootloader binary itself: asked for with --install-bootloader or, as
// NixOS's stock installers do, NIXOS_INSTALL_BOOTLOADER=1 (nixos-install,
// nixos-rebuild --install-bootloader). Otherwise only entries are written.
void install_bootloader_binary(Context& ctx) {
    BackendOptions bo;
    bo.esp = ctx.config.esp;
    bo.efivars = ctx.config.efivars;
    bo.state = ctx.config.state;
    bo.extra = ctx.config.extra;
    if (ctx.backend().kind() == Bootloader::grub) {
        grub::install_grub_bootloader(bo);
        return;
    }
    const std::vector<std::string> argv{"bootctl", "--esp-path=" + ctx.config.esp.string(), "install"};
    const ProcessResult r = run_process(argv);
    if (r.exit_status != 0)
        throw Error("bootctl install failed (exit " + std::to_string(r.exit_status) +
                    "): " + first_line(r.err.empty() ? r.out : r.err));
}

int run_install(Context& ctx, const po::variables_map& vm) {
    if (vm.count("keep")) apply_config_value(ctx.config, "keep", vm["keep"].as<std::string>(), "--keep");
    if (vm.count("tries")) apply_config_value(ctx.config, "tries", vm["tries"].as<std::string>(), "--tries");
    const char* env = std::getenv("NIXOS_INSTALL_BOOTLOADER");
    if (vm.count("install-bootloader") || (env && std::string_view(env) == "1")) install_bootloader_binary(ctx);
    auto report = ctx.machine().install();
    for (const auto& s : report.skipped) spdlog::warn("skipped {}", s);
    for (const auto& w : report.sync.warnings) spdlog::warn("{}", w);
    if (ctx.format == Format::json) {
        nlohmann::json j{{"added", report.sync.added},      {"updated", report.sync.updated},
                         {"removed", report.sync.removed},  {"skipped", report.skipped},
                         {"gc_removed", report.gc.removed}, {"warnings", report.sync.warnings}};
        j["adopted"] = report.adopted ? nlohmann::json(*report.adopted) : nlohmann::json(nullptr);
        j["default"] = report.default_entry ? nlohmann::json(*report.default_entry) : nlohmann::json(nullptr);
        ctx.out << j.dump() << "\n";
        return 0;
    }
    if (report.adopted) ctx.out << "adopted " << *report.adopted << " as good\n";
    ctx.out << report.sync.added.size() << " added, " << report.sync.updated.size() << " updated, "
            << report.sync.removed.size() << " removed";
    if (!report.gc.removed.empty()) ctx.out << ", " << report.gc.removed.size() << " files collected";
    ctx.out << "; default " << report.default_entry.value_or("(none)") << "\n";
    return 0;
}

VerbRegistration reg{Verb{
    "install", "[--keep N] [--tries N] [--install-bootloader]",
    "sync entries with the profile's generations (incremental)", 10,
    [](po::options_description& d, po::positional_options_description&) {
        d.add_options()(
            "keep", po::value<std::string>()->value_name("N"),
            "keep the newest N generations (0 = all); always kept besides: the newest good, the default, an armed trial, the booted and the running generation; older good ones beyond N are removed")(
            "tries", po::value<std::string>()->value_name("N"),
            "tries given to new generations (default from the config, 1)")(
            "install-bootloader",
            "also (re)install the bootloader itself: grub-install (grub-* keys) or bootctl install; NIXOS_INSTALL_BOOTLOADER=1 does the same");
    },
    run_install, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
