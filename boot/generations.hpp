// NixOS system generations: PROFILE-N-link symlinks beside the profile
// (/nix/var/nix/profiles/system -> system-5-link -> /nix/store/...).
#pragma once

#include "boot/bootspec.hpp"

#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace nixboot {

struct Generation {
    unsigned number = 0;
    std::filesystem::path link;      // PROFILE-N-link
    std::filesystem::path toplevel;  // the link's target (absolute, lexically normal; not canonicalized)
    BootDocument doc;
    std::time_t time = 0;       // mtime of the link itself (lstat), for titles
    std::string nixos_version;  // TOPLEVEL/nixos-version, else ""
};

// The largest generation number nixboot installs: an entry ID
// (nixos-generation-N) carries at most 9 digits. A link numbered above it is
// refused at install, never written as an entry nothing could read back.
constexpr unsigned max_generation = 999'999'999;

struct SkippedGeneration {
    unsigned number = 0;
    std::string reason;  // one line: the Error text
};

struct GenerationScan {
    std::vector<Generation> ok;              // sorted by number
    std::vector<SkippedGeneration> skipped;  // sorted by number
    std::vector<std::string> out_of_range;   // "'LINK': ..." for links numbered above max_generation
};

// A generation link as found beside the profile, before reading its system.
struct GenerationLink {
    unsigned number = 0;
    std::filesystem::path link;    // PROFILE-N-link
    std::filesystem::path target;  // where it points (absolute, lexically normal)
    std::time_t time = 0;          // mtime of the link itself
};

// Cheap: one directory listing plus one lstat and readlink per link; reads no
// toplevel. Sorted by number. For callers that only need to know which
// generations exist (no-op install, status). Throws only if the profile's
// directory cannot be listed.
// Links numbered above max_generation are left out, and listed in
// `out_of_range` when it is given.
std::vector<GenerationLink> list_generation_links(const std::filesystem::path& profile,
                                                  std::vector<std::filesystem::path>* out_of_range = nullptr);

// Reads one generation: its boot.json (or legacy files) and checks that every
// kernel, initrd and devicetree it names exists. Throws Error naming the link
// or file and the cause.
Generation read_generation(const GenerationLink& link);

// Lists PROFILE-N-link (N a decimal without leading zeros, fits unsigned)
// next to `profile`; each one is read with read_boot_document. A broken one
// (dangling link, missing kernel, malformed boot.json) is skipped with the
// reason and never stops the others. Throws only if the profile's directory
// cannot be listed.
GenerationScan discover_generations(const std::filesystem::path& profile);

// The N the profile symlink points at (its target "system-N-link"), or
// nullopt if the profile is missing or does not point at a generation link.
std::optional<unsigned> current_generation(const std::filesystem::path& profile);

// Path of generation n's link: PROFILE-N-link.
std::filesystem::path generation_link(const std::filesystem::path& profile, unsigned n);

// Points the profile at generation n atomically, as nix-env --switch-generation:
// symlink PROFILE.tmp-XXXX -> "NAME-N-link", rename it over the profile,
// fsync the directory. Throws Error if PROFILE-N-link does not exist.
void switch_profile(const std::filesystem::path& profile, unsigned n);

}  // namespace nixboot
