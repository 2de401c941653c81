// The GRUB backend's own record, BOOT/grub/nixboot.json: every entry's state
// (good / trial / bad) and menu data, the persistent default, the armed
// trial, and the kernel copy cache. grubenv holds only the live counter (it is
// 1024 bytes; 1000 generations do not fit). grub.cfg is regenerated from
// this file alone, so set_state/set_default need no generations.
// Format documented in docs/grub.md; pure parse/format here.
#pragma once

#include "boot/backend.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::grub {

inline constexpr std::string_view state_format = "nixboot-grub-state-1";

struct EntryRecord {
    std::string id;
    unsigned generation = 0;
    std::string specialisation;
    EntryState state = EntryState::good;
    unsigned tries = 0;               // trial: tries it was armed with (or entered with)
    std::string title;
    std::string version;
    std::string kernel;               // relative to the boot dir: "kernels/<hash>-linux"
    std::string initrd;               // relative, "" when none
    std::vector<std::string> params;  // "init=TOPLEVEL/init" then the generation's params
    bool operator==(const EntryRecord&) const = default;
};

// A copied kernel/initrd, so unchanged sources are not hashed again.
struct CopiedFile {
    std::string name;                 // "kernels/<hash>-linux"
    std::uint64_t size = 0;
    std::uint64_t mtime_ns = 0;
    std::uint64_t ino = 0;
    bool operator==(const CopiedFile&) const = default;
};

struct GrubState {
    std::vector<EntryRecord> entries;           // menu order: newest generation first
    std::optional<std::string> default_id;      // the persistent default (good)
    std::optional<std::string> trial_id;        // armed trial baked into grub.cfg
    std::map<std::string, CopiedFile> copies;   // source path -> copy
    bool operator==(const GrubState&) const = default;

    EntryRecord* find(std::string_view id);
    const EntryRecord* find(std::string_view id) const;
};

// Throws ParseError "ORIGIN: REASON" for JSON that is not this format
// (wrong "format", missing or mistyped fields, unknown state, duplicate IDs).
GrubState parse_state(std::string_view text, std::string_view origin);
// Deterministic JSON (one entry per line); parse_state(format_state(s)) == s.
std::string format_state(const GrubState& state);

// Puts entries into menu order: generation descending, main entry before its
// specialisations, specialisations by name.
void sort_entries(std::vector<EntryRecord>& entries);

}  // namespace nixboot::grub
