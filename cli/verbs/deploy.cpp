// nixboot deploy HOST...: the deployer's side of trials that wait for a
// confirm (boot/deploy/, docs/deploy.md). Options, the fleet file, output.
#include "cli/verbs.hpp"

#include "boot/deploy/deploy.hpp"
#include "boot/util/error.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <mutex>

namespace nixboot::cli {
namespace {

// Options whose value is one setting of the fleet file (same key).
const std::vector<std::string> valued_keys = {
    "push",         "generation",     "confirm-timeout", "check-timeout", "ssh-options",   "connect-timeout",
    "boot-timeout", "settle-timeout", "command-timeout", "push-timeout",  "poll-interval", "parallel"};

deploy::DeployOptions deploy_options(const po::variables_map& vm, std::string& origin) {
    if (vm.count("live") && vm.count("reboot")) throw UsageError("--live and --reboot exclude each other");
    std::vector<std::string> given;
    for (const auto& k : valued_keys)
        if (vm.count(k)) given.push_back(k);
    if (vm.count("check")) given.emplace_back("check");
    if (vm.count("live") || vm.count("reboot")) given.emplace_back("mode");
    deploy::DeployOptions o;
    if (vm.count("config")) {
        origin = vm["config"].as<std::string>();
        auto text = read_config_text(origin, Required::yes);
        deploy::apply_deploy_file(o, deploy::parse_deploy_file(*text, origin), origin, given);
    }
    for (const auto& k : valued_keys)
        if (vm.count(k)) deploy::apply_deploy_value(o, k, vm[k].as<std::string>(), "--" + k);
    if (vm.count("check")) {
        o.checks.clear();
        for (const auto& c : vm["check"].as<std::vector<std::string>>())
            deploy::apply_deploy_value(o, "check", c, "--check");
    }
    if (vm.count("live") || vm.count("reboot"))
        o.mode = vm.count("live") ? deploy::TrialMode::live : deploy::TrialMode::reboot;
    std::vector<std::string> requested;
    if (vm.count("host")) requested = vm["host"].as<std::vector<std::string>>();
    o.hosts = deploy::select_hosts(o.hosts, requested, origin);
    return o;
}

nlohmann::json report_json(const deploy::TargetReport& r) {
    auto opt = [](const std::optional<unsigned>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    return {{"host", r.host},
            {"generation", opt(r.generation)},
            {"previous", opt(r.previous)},
            {"trial_id", r.trial_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.trial_id)},
            {"outcome", deploy::to_string(r.outcome)},
            {"detail", r.detail},
            {"line", deploy::report_line(r)}};
}

void print_table(std::ostream& out, const std::vector<deploy::TargetReport>& reports) {
    std::size_t width = 4;
    for (const auto& r : reports) width = std::max(width, r.host.size());
    char line[512];
    std::snprintf(line, sizeof line, "\n%-*s  %-10s  %-12s  %s\n", static_cast<int>(width), "HOST", "GENERATION",
                  "OUTCOME", "DETAIL");
    out << line;
    for (const auto& r : reports) {
        std::string gen = r.generation ? std::to_string(*r.generation) : "-";
        std::snprintf(line, sizeof line, "%-*s  %-10s  %-12s  ", static_cast<int>(width), r.host.c_str(), gen.c_str(),
                      deploy::to_string(r.outcome));
        out << line << r.detail << "\n";
    }
}

int run_deploy(Context& ctx, const po::variables_map& vm) {
    std::string origin = "the command line";
    deploy::DeployOptions o;
    std::vector<health::CheckSpec> checks;
    try {
        o = deploy_options(vm, origin);
        checks = deploy::resolve_checks(o.checks, o.check_timeout);
    } catch (const UsageError& e) {
        throw UsageError(std::string("deploy: ") + e.what());
    }
    o.ssh.program = deploy::ssh_program();
    std::mutex lock;
    auto progress = [&](const std::string& host, const std::string& line) {
        std::lock_guard<std::mutex> hold(lock);
        std::cerr << host << ": " << line << "\n" << std::flush;
    };
    auto done = [&](const deploy::TargetReport& r) {
        std::lock_guard<std::mutex> hold(lock);
        if (ctx.format == Format::text) ctx.out << deploy::report_line(r) << "\n" << std::flush;
    };
    auto reports = deploy::deploy_all(o, checks, progress, done);
    unsigned promoted = 0;
    for (const auto& r : reports) promoted += r.outcome == deploy::Outcome::promoted;
    if (ctx.format == Format::json) {
        nlohmann::json j{{"targets", nlohmann::json::array()}, {"promoted", promoted}, {"total", reports.size()}};
        for (const auto& r : reports) j["targets"].push_back(report_json(r));
        ctx.out << j.dump() << "\n";
    } else {
        print_table(ctx.out, reports);
        ctx.out << promoted << " of " << reports.size() << " promoted\n";
    }
    return promoted == reports.size() ? 0 : 1;
}

void deploy_options_description(po::options_description& d, po::positional_options_description& p) {
    auto text = [](const char* name) { return po::value<std::string>()->value_name(name); };
    d.add_options()("host", po::value<std::vector<std::string>>()->value_name("HOST"), "targets (ssh destinations)")(
        "config", text("FILE"), "fleet file: the options below as 'key = value', 'hosts = a b', 'mode = live'")(
        "push", text("CMD"), "run first, through /bin/sh, {host} replaced: installs the new generation's entry")(
        "generation", text("N"), "the generation to try (default: the newest entry neither good nor bad)")(
        "reboot", "trial across a reboot (default)")("live", "live trial, no reboot")(
        "confirm-timeout", text("S"), "the target's window for the confirm (default 300)")(
        "check", po::value<std::vector<std::string>>()->value_name("PATH"),
        "a deployer check 'PATH [ARGS]' or a directory of them (repeatable)")(
        "check-timeout", text("S"), "per deployer check (default 60, cut to the window)")(
        "ssh-options", text("OPTS"), "more ssh options, split at spaces")("connect-timeout", text("S"),
                                                                          "ssh ConnectTimeout (default 10)")(
        "boot-timeout", text("S"), "wait for the trial to await the confirm (default 600)")(
        "settle-timeout", text("S"), "wait for the outcome after confirm or revert (default 600)")(
        "command-timeout", text("S"), "per ssh step (default 120)")("push-timeout", text("S"), "(default 3600)")(
        "poll-interval", text("S"), "between status polls, fractions allowed (default 5)")(
        "parallel", text("N"), "targets at once (default 1)");
    p.add("host", -1);
}

VerbRegistration reg{Verb{"deploy", "HOST... [--push CMD] [--check PATH]... [--live] [--config FILE]",
                          "arm a trial on each target over ssh, run the deployer's checks, confirm or revert, report",
                          60, deploy_options_description, run_deploy, Mutates::no}};

}  // namespace
}  // namespace nixboot::cli
