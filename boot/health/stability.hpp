// The stability window: a trial boot whose checks passed is promoted only if
// they still pass S seconds later and no service restarted or failed
// meanwhile, so a service that crash-loops a minute after boot fails the
// trial instead of being blessed (config key `stability-window`).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::health {

struct ServiceState {
    unsigned restarts = 0;  // NRestarts: automatic restarts (Restart=) since the unit was loaded
    std::string active;     // ActiveState: "active", "failed", "activating", ...
    bool operator==(const ServiceState&) const = default;
};
using ServiceStates = std::map<std::string, ServiceState>;  // by unit name

// Parses the output of `systemctl show --property=Id,NRestarts,ActiveState
// PATTERN`: blocks of KEY=VALUE lines, one block per unit, blank lines
// between them, properties in any order. Throws ParseError "ORIGIN: unit
// block N has no Id" or "ORIGIN: UNIT: NRestarts 'x' is not a number".
ServiceStates parse_service_states(std::string_view text, std::string_view origin);

// What went wrong from `before` to `after`, one phrase per unit in name
// order: "vm-app.service restarted 3 times", "vm-app.service failed" (newly
// in ActiveState failed). Empty when nothing did.
std::vector<std::string> instability(const ServiceStates& before, const ServiceStates& after);

// The service units systemd has loaded, read with `systemctl show` (argv[0]
// is NIXBOOT_SYSTEMCTL when set) through run_checks, bounded by `timeout`.
// Throws Error "reading the services' restart counts: 'systemctl ...' REASON".
ServiceStates read_service_states(std::chrono::seconds timeout);

}  // namespace nixboot::health
