// The verb table of `nixboot`. Each verb lives in cli/verbs/<verb>.cpp and
// registers itself with a static VerbRegistration; main() parses the global
// options, finds the verb, parses its options and calls run().
#pragma once

#include "boot/backend.hpp"
#include "boot/config.hpp"
#include "boot/machine.hpp"

#include <boost/program_options.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace nixboot::cli {

namespace po = boost::program_options;

enum class Format { text, json };

// Everything a verb needs; backend and machine are created on first use so a
// usage error is reported before anything is opened.
class Context {
public:
    Config config;
    Format format = Format::text;
    std::filesystem::path config_path;     // the file that was read ("" if none)
    std::vector<std::string> global_args;  // global options as given (for re-invoking nixboot)
    std::string self;                      // path of this executable
    std::ostream& out;
    // MachineOptions::lock_wait of the machine (set before machine() is first called).
    std::chrono::milliseconds lock_wait{0};

    explicit Context(std::ostream& o) : out(o) {}
    Backend& backend();
    Machine& machine();
    MachineOptions machine_options() const;

private:
    std::unique_ptr<Backend> backend_;
    std::unique_ptr<Machine> machine_;
};

// Whether a verb changes the ESP, EFI variables, the state directory or the
// profile (it then refuses to start where the caller cannot write them).
enum class Mutates { no, yes };

struct Verb {
    std::string name;      // "try"
    std::string synopsis;  // "GEN [--tries N] [--reboot]"
    std::string summary;   // one line for `nixboot --help`
    int order = 100;       // position in help listings
    // Adds the verb's options and positional arguments.
    std::function<void(po::options_description&, po::positional_options_description&)> options;
    // Runs the verb; returns the exit status (0 ok). Throws UsageError / Error.
    std::function<int(Context&, const po::variables_map&)> run;
    Mutates mutates = Mutates::no;
};

void register_verb(Verb verb);
// Registered verbs sorted by `order`, then name.
std::vector<const Verb*> verbs();
const Verb* find_verb(std::string_view name);

struct VerbRegistration {
    explicit VerbRegistration(Verb verb) { register_verb(std::move(verb)); }
};

// Shared helpers for verbs.
// "5" -> nixos-generation-5; an entry ID is accepted as is. UsageError otherwise.
std::string entry_argument(std::string_view text);
// A decimal generation number; UsageError "ARG: 'x' is not a generation number".
unsigned generation_argument(std::string_view what, std::string_view text);
// For a verb that mutates, run by a user other than root: the first of the
// ESP, the state directory (its nearest existing ancestor when it is still to
// be created) and the profile's directory the caller cannot write, as the
// refusal line; nullopt when all are writable, or for root.
std::optional<std::string> write_access_refusal(const std::string& verb, const Config& config);
// The full help of one verb (usage line, summary, options).
std::string verb_help(const Verb& verb);

}  // namespace nixboot::cli
