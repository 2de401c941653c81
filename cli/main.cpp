// nixboot: reboot-safe NixOS generation trials. One handler maps errors to
// exit codes: UsageError -> 2, Error -> 1; every error is one line.
#include "cli/verbs.hpp"

#include "boot/util/error.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <set>
#include <sstream>

namespace nixboot::cli {
namespace {

constexpr const char* version_string = "0.1.0";

// Global options that take a value (so the verb is the first other word).
const std::set<std::string> valued = {"--esp",   "--xbootldr",   "--profile", "--efivars",
                                      "--state", "--bootloader", "--config"};

po::options_description global_options() {
    po::options_description d("Global options (before the verb)");
    d.add_options()("esp", po::value<std::string>()->value_name("DIR"), "the ESP (default /boot)")(
        "xbootldr", po::value<std::string>()->value_name("DIR"),
        "systemd-boot's XBOOTLDR partition, read for its entries (default none)")(
        "profile", po::value<std::string>()->value_name("PATH"),
        "the system profile (default /nix/var/nix/profiles/system)")(
        "efivars", po::value<std::string>()->value_name("DIR"),
        "efivarfs directory (default /sys/firmware/efi/efivars)")(
        "state", po::value<std::string>()->value_name("DIR"),
        "state directory: journal, lock (default /var/lib/nixboot)")(
        "bootloader", po::value<std::string>()->value_name("NAME"), "systemd-boot or grub (default: detect)")(
        "config", po::value<std::string>()->value_name("FILE"),
        "ini file with the same keys (default /etc/nixboot/nixboot.conf)")(
        "json", "machine-readable output (status, list, history)")("verbose,v", "log debug messages to stderr")(
        "quiet,q", "log errors only")("help,h", "show this help and exit")("version", "show the version and exit");
    return d;
}

std::string full_help() {
    std::ostringstream out;
    out << "Usage: nixboot [GLOBAL OPTIONS] VERB [ARGS]\n"
           "Reboot-safe NixOS generations: new generations boot as trials the bootloader\n"
           "counts, health checks promote them, failures fall back to the last good one.\n\n"
        << global_options() << "\nVerbs:\n";
    for (const auto* v : verbs())
        out << "  " << v->name << (v->synopsis.empty() ? "" : " " + v->synopsis) << "\n      " << v->summary << "\n";
    out << "\nEach verb takes --help. 'nixboot-try ARGS' is 'nixboot try ARGS'.\n"
           "Exit status: 0 success, 1 the operation failed, 2 bad usage (nothing written).\n";
    for (const auto* v : verbs()) {
        po::options_description d("Options of '" + v->name + "'");
        po::positional_options_description p;
        if (v->options) v->options(d, p);
        if (!d.options().empty()) out << "\n" << d;
    }
    return out.str();
}

std::string usage_context(const std::string& verb, const std::string& msg) {
    return verb.empty() ? msg : verb + ": " + msg;
}

int run(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    std::string prog = argc > 0 ? argv[0] : "nixboot";
    auto base = prog.substr(prog.find_last_of('/') == std::string::npos ? 0 : prog.find_last_of('/') + 1);
    bool as_try = base == "nixboot-try";

    // Split: global options, then the verb, then its arguments.
    std::size_t i = 0;
    for (; i < args.size(); ++i) {
        const auto& a = args[i];
        if (a == "--") throw UsageError("no verb given (see 'nixboot --help')");
        if (a.empty() || a[0] != '-') break;
        if (as_try && a != "--help" && a != "-h" && !a.starts_with("--esp") && !a.starts_with("--xbootldr") &&
            !a.starts_with("--profile") && !a.starts_with("--efivars") && !a.starts_with("--state") &&
            !a.starts_with("--bootloader") && !a.starts_with("--config") && a != "--json" && a != "-v" &&
            a != "--verbose" && a != "-q" && a != "--quiet")
            break;  // nixboot-try: the first non-global option belongs to try
        if (valued.count(a) && i + 1 < args.size()) ++i;
    }
    std::vector<std::string> global_args(args.begin(), args.begin() + static_cast<long>(i));
    std::vector<std::string> rest(args.begin() + static_cast<long>(i), args.end());

    auto gdesc = global_options();
    po::variables_map gvm;
    try {
        po::store(po::command_line_parser(global_args).options(gdesc).run(), gvm);
        po::notify(gvm);
    } catch (const po::error& e) {
        throw UsageError(e.what());
    }
    if (gvm.count("verbose") && gvm.count("quiet")) throw UsageError("--verbose and --quiet exclude each other");
    spdlog::set_default_logger(spdlog::stderr_color_st("nixboot"));
    spdlog::set_pattern("nixboot: %^%l%$: %v");
    spdlog::set_level(gvm.count("verbose") ? spdlog::level::debug
                      : gvm.count("quiet") ? spdlog::level::err
                                           : spdlog::level::info);

    if (gvm.count("version")) {
        std::cout << "nixboot " << version_string << "\n";
        return 0;
    }
    std::string verb_name;
    if (as_try) {
        verb_name = "try";
    } else {
        if (gvm.count("help") || rest.empty()) {
            if (rest.empty() && !gvm.count("help")) throw UsageError("no verb given (see 'nixboot --help')");
            std::cout << full_help();
            return 0;
        }
        verb_name = rest.front();
        rest.erase(rest.begin());
    }
    const Verb* verb = find_verb(verb_name);
    if (!verb) throw UsageError("unknown verb '" + verb_name + "' (see 'nixboot --help')");
    if (as_try && gvm.count("help")) {
        std::cout << verb_help(*verb);
        return 0;
    }

    po::options_description vdesc;
    po::positional_options_description vpos;
    if (verb->options) verb->options(vdesc, vpos);
    vdesc.add_options()("help,h", "show this verb's help");
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(rest).options(vdesc).positional(vpos).run(), vm);
        if (vm.count("help")) {
            std::cout << verb_help(*verb);
            return 0;
        }
        po::notify(vm);
    } catch (const po::error& e) {
        throw UsageError(usage_context(verb_name, e.what()));
    }

    // Settings: defaults < config file < command line.
    Context ctx(std::cout);
    ctx.global_args = global_args;
    ctx.self = prog;
    ctx.format = gvm.count("json") ? Format::json : Format::text;
    std::vector<std::string> overridden;
    for (const char* k : {"esp", "xbootldr", "profile", "efivars", "state", "bootloader"})
        if (gvm.count(k)) overridden.emplace_back(k);
    for (const char* k : {"tries", "keep", "confirm-timeout"})
        if (vm.count(k) && !vm[k].defaulted()) overridden.emplace_back(k);
    std::filesystem::path cfg = gvm.count("config") ? gvm["config"].as<std::string>() : "/etc/nixboot/nixboot.conf";
    if (const char* env = std::getenv("NIXBOOT_CONFIG"); env && !gvm.count("config")) cfg = env;
    if (auto file = read_config_file(cfg, gvm.count("config") ? Required::yes : Required::no)) {
        apply_config_file(ctx.config, *file, cfg.string(), overridden);
        ctx.config_path = cfg;
    }
    for (const char* k : {"esp", "xbootldr", "profile", "efivars", "state", "bootloader"})
        if (gvm.count(k)) apply_config_value(ctx.config, k, gvm[k].as<std::string>(), std::string("--") + k);
    if (verb->mutates == Mutates::yes)
        if (auto refusal = write_access_refusal(verb_name, ctx.config)) throw Error(*refusal);
    return verb->run(ctx, vm);
}

}  // namespace
}  // namespace nixboot::cli

int main(int argc, char** argv) {
    try {
        return nixboot::cli::run(argc, argv);
    } catch (const nixboot::UsageError& e) {
        std::fprintf(stderr, "nixboot: %s\n", e.what());
        return 2;
    } catch (const nixboot::Error& e) {
        std::fprintf(stderr, "nixboot: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "nixboot: %s\n", e.what());
        return 1;
    }
}
