#include "boot/health/stability.hpp"

#include "boot/health/checks.hpp"
#include "boot/util/process.hpp"
#include "boot/util/error.hpp"

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

namespace nixboot::health {

namespace {

struct Block {
    std::string id;
    ServiceState state;
    bool any = false;
};

void finish_block(Block& b, ServiceStates& out, unsigned& count, std::string_view origin) {
    if (!b.any) return;
    ++count;
    if (b.id.empty()) throw ParseError(std::string(origin) + ": unit block " + std::to_string(count) + " has no Id");
    out[b.id] = b.state;
    b = Block{};
}

// argv[0] as posix_spawn needs it: a path, looked up in PATH when it has no '/'.
std::string resolve(const std::string& program) {
    if (program.find('/') != std::string::npos) return program;
    const char* path = std::getenv("PATH");
    std::string_view dirs = path ? path : "/usr/bin:/bin";
    while (!dirs.empty()) {
        const auto colon = dirs.find(':');
        const std::string_view dir = dirs.substr(0, colon);
        const std::string candidate = std::string(dir.empty() ? "." : dir) + "/" + program;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        if (colon == std::string_view::npos) break;
        dirs.remove_prefix(colon + 1);
    }
    return program;  // posix_spawn fails with ENOENT, named in the error
}

}  // namespace

ServiceStates parse_service_states(std::string_view text, std::string_view origin) {
    ServiceStates out;
    Block block;
    unsigned count = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) {
            finish_block(block, out, count, origin);
            continue;
        }
        const auto eq = line.find('=');
        if (eq == std::string_view::npos) continue;  // not a property line
        const std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
        block.any = true;
        if (key == "Id") {
            block.id = std::string(value);
        } else if (key == "NRestarts") {
            unsigned n = 0;
            const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || end != value.data() + value.size() || value.empty())
                throw ParseError(std::string(origin) + ": " + (block.id.empty() ? "a unit" : block.id) +
                                 ": NRestarts '" + std::string(value) + "' is not a number");
            block.state.restarts = n;
        } else if (key == "ActiveState") {
            block.state.active = std::string(value);
        }
    }
    finish_block(block, out, count, origin);
    return out;
}

std::vector<std::string> instability(const ServiceStates& before, const ServiceStates& after) {
    std::vector<std::string> out;
    for (const auto& [unit, now] : after) {
        const auto was = before.find(unit);
        const unsigned earlier = was == before.end() ? 0 : was->second.restarts;
        if (now.restarts > earlier) {
            const unsigned n = now.restarts - earlier;
            out.push_back(unit + " restarted " + std::to_string(n) + (n == 1 ? " time" : " times"));
        } else if (now.active == "failed" && (was == before.end() || was->second.active != "failed")) {
            out.push_back(unit + " failed");
        }
    }
    return out;
}

ServiceStates read_service_states(std::chrono::seconds timeout) {
    auto argv = program_from_env("NIXBOOT_SYSTEMCTL",
                                 {"systemctl", "show", "--property=Id,NRestarts,ActiveState", "--", "*.service"});
    CheckSpec spec;
    spec.name = "systemctl";
    spec.path = resolve(argv[0]);
    spec.args.assign(argv.begin() + 1, argv.end());
    spec.timeout = timeout;
    std::string text;
    const std::string prefix = spec.name + ": ";
    const auto results = run_checks({spec}, [&](std::string_view line) {
        if (line.starts_with(prefix)) line.remove_prefix(prefix.size());
        text += line;
        text += '\n';
    });
    const std::string what = "reading the services' restart counts: '" + join_command(argv) + "'";
    if (results.at(0).outcome != CheckOutcome::passed) throw Error(what + " " + results.at(0).detail);
    return parse_service_states(text, what);
}

}  // namespace nixboot::health
