// nixboot try GEN: arm a one-shot trial of a generation.
#include "cli/verbs.hpp"

#include "boot/util/error.hpp"

#include "boot/health/live.hpp"
#include "boot/util/process.hpp"

#include <nlohmann/json.hpp>

#include <ostream>

namespace nixboot::cli {
namespace {

// try GEN --reboot --confirm-timeout S: the trial boot waits for `nixboot
// confirm ID` once its checks pass. The ID is printed before the reboot.
int run_try_awaiting_confirm(Context& ctx, const po::variables_map& vm, unsigned gen) {
    // One try: a reset or power cut during the window must fall back to the
    // default, never boot the trial again (its checks alone would promote it).
    if (vm.count("tries") && ctx.config.tries != 1)
        throw UsageError("try: --confirm-timeout with --reboot is one try; --tries " +
                         std::to_string(ctx.config.tries) + " is not allowed with it");
    TryOptions to;
    to.tries = 1;
    to.accept_risk = vm.count("accept-risk") > 0;
    std::vector<std::string> revert{ctx.self};
    revert.insert(revert.end(), ctx.global_args.begin(), ctx.global_args.end());
    revert.push_back("live-revert");
    auto report = health::arm_confirm_trial(ctx.machine(), gen, to, health::live_options(ctx.config, revert));
    const auto& r = report.armed;
    const auto& id = report.trial.id;
    if (ctx.format == Format::json) {
        ctx.out << nlohmann::json{{"entry", r.entry}, {"mode", std::string(to_string(r.mode))},
                                  {"tries", r.tries}, {"fallback", r.fallback},
                                  {"trial_id", id},   {"confirm_timeout", report.trial.window}}
                       .dump()
                << "\n";
    } else {
        ctx.out << "armed " << r.entry << " as a " << to_string(r.mode) << " trial (" << r.tries
                << (r.tries == 1 ? " try" : " tries") << "); it falls back to " << r.fallback << "\n";
        ctx.out << "trial " << id << ": once its checks pass on the trial boot, run 'nixboot confirm " << id
                << "' from a new connection within " << report.trial.window
                << " s, or it is marked bad and the machine reboots into " << r.fallback << "\n";
    }
    ctx.out << std::flush;
    auto reboot = command_from_env("NIXBOOT_REBOOT_COMMAND", ctx.machine_options().reboot_command);
    const int status = run_command(reboot);
    if (status != 0)
        throw Error("trial " + id + " is armed, but '" + join_command(reboot) + "' failed (exit status " +
                    std::to_string(status) + "); reboot to start it");
    return 0;
}

int run_try(Context& ctx, const po::variables_map& vm) {
    if (!vm.count("generation")) throw UsageError("try: missing GEN (see 'nixboot try --help')");
    unsigned gen = generation_argument("try: GEN", vm["generation"].as<std::string>());
    if (vm.count("tries")) apply_config_value(ctx.config, "tries", vm["tries"].as<std::string>(), "--tries");
    if (vm.count("confirm-timeout"))
        apply_config_value(ctx.config, "confirm-timeout", vm["confirm-timeout"].as<std::string>(), "--confirm-timeout");
    bool live = vm.count("live") > 0;
    if (vm.count("confirm-timeout") && !live && !vm.count("reboot"))
        throw UsageError("try: --confirm-timeout needs --live or --reboot");
    if (live && vm.count("reboot")) throw UsageError("try: --live and --reboot exclude each other");
    if (!live && vm.count("confirm-timeout")) return run_try_awaiting_confirm(ctx, vm, gen);
    if (live) {
        health::LiveOptions lo;
        lo.profile = ctx.config.profile;
        lo.state = ctx.config.state;
        lo.checks_dir = ctx.config.checks_dir;
        lo.check_settings.default_timeout = std::chrono::seconds(ctx.config.check_timeout);
        lo.check_settings.sections = ctx.config.checks;
        lo.confirm_timeout = std::chrono::seconds(ctx.config.confirm_timeout);
        lo.revert_argv = {ctx.self};
        lo.revert_argv.insert(lo.revert_argv.end(), ctx.global_args.begin(), ctx.global_args.end());
        lo.revert_argv.push_back("live-revert");
        auto report =
            health::start_live_trial(ctx.machine(), gen, lo, [&](std::string_view line) { ctx.out << line << "\n"; });
        if (report.reverted)
            throw Error("live trial of generation " + std::to_string(gen) + " reverted: " + report.reason);
        if (ctx.format == Format::json) {
            ctx.out << nlohmann::json{{"entry", entry_id(gen)},
                                      {"mode", "live"},
                                      {"trial_id", report.trial.id},
                                      {"deadline", report.trial.deadline}}
                           .dump()
                    << "\n";
            return 0;
        }
        ctx.out << "generation " << gen << " is live as trial " << report.trial.id << "; run 'nixboot confirm "
                << report.trial.id << "' from a new connection within " << ctx.config.confirm_timeout
                << " s, or it reverts\n";
        return 0;
    }
    TryOptions to;
    to.tries = ctx.config.tries;
    to.reboot = vm.count("reboot") ? Reboot::yes : Reboot::no;
    to.accept_risk = vm.count("accept-risk") > 0;
    auto r = ctx.machine().try_generation(gen, to);
    if (ctx.format == Format::json) {
        ctx.out << nlohmann::json{{"entry", r.entry},
                                  {"mode", std::string(to_string(r.mode))},
                                  {"tries", r.tries},
                                  {"fallback", r.fallback}}
                       .dump()
                << "\n";
        return 0;
    }
    ctx.out << "armed " << r.entry << " as a " << to_string(r.mode) << " trial (" << r.tries
            << (r.tries == 1 ? " try" : " tries") << "); it falls back to " << r.fallback << "\n";
    if (to.reboot == Reboot::no) ctx.out << "reboot to start the trial\n";
    return 0;
}

VerbRegistration reg{Verb{
    "try", "GEN [--tries N] [--reboot [--confirm-timeout S]] [--live --confirm-timeout S]",
    "arm a one-shot trial of GEN", 20,
    [](po::options_description& d, po::positional_options_description& p) {
        d.add_options()("generation", po::value<std::string>()->value_name("GEN"), "the generation number to try")(
            "tries", po::value<std::string>()->value_name("N"),
            "boots the trial may take (default from the config, 1); on systemd-boot more than 1 arms as the preferred entry (260+) or by sort order")(
            "reboot", "reboot right away (systemctl reboot)")(
            "live", "activate GEN now without a reboot; revert unless confirmed")(
            "confirm-timeout", po::value<std::string>()->value_name("S"),
            "seconds to wait for 'nixboot confirm' (default 300); with --reboot the trial boot waits that long "
            "once its checks pass, is promoted only by the confirm, else marked bad and rebooted into the default")(
            "accept-risk", "GRUB: arm even where GRUB cannot save its environment");
        p.add("generation", 1);
    },
    run_try, Mutates::yes}};

}  // namespace
}  // namespace nixboot::cli
