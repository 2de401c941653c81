// The GRUB backend's own record: every entry's state (good / trial / bad) and
// menu data, the persistent default, the armed trial, and the kernel copy
// cache. It is kept twice, BOOT/grub/nixboot-state.a and .b, written in turn
// and in place (see StateSlot below), so a power cut during a write leaves the
// other copy whole and the FAT under /boot untouched. grubenv holds only the live counter (it is
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
    unsigned tries = 0;  // trial: tries it was armed with (or entered with)
    std::string title;
    std::string version;
    std::string kernel;               // relative to the boot dir: "kernels/<hash>-linux"
    std::string initrd;               // relative, "" when none
    std::vector<std::string> params;  // "init=TOPLEVEL/init" then the generation's params
    bool operator==(const EntryRecord&) const = default;
};

// A copied kernel/initrd, so unchanged sources are not hashed again.
struct CopiedFile {
    std::string name;  // "kernels/<hash>-linux"
    std::uint64_t size = 0;
    std::uint64_t mtime_ns = 0;
    std::uint64_t ino = 0;
    bool operator==(const CopiedFile&) const = default;
};

struct GrubState {
    std::vector<EntryRecord> entries;          // menu order: newest generation first
    std::optional<std::string> default_id;     // the persistent default (good)
    std::optional<std::string> trial_id;       // armed trial baked into grub.cfg
    std::map<std::string, CopiedFile> copies;  // source path -> copy
    bool operator==(const GrubState&) const = default;

    EntryRecord* find(std::string_view id);
    const EntryRecord* find(std::string_view id) const;
};

// Throws ParseError "ORIGIN: REASON" for JSON that is not this format
// (wrong "format", missing or mistyped fields, unknown state, duplicate IDs).
GrubState parse_state(std::string_view text, std::string_view origin);
// Deterministic JSON (one entry per line); parse_state(format_state(s)) == s.
std::string format_state(const GrubState& state);

// The two copies of the state, relative to the boot dir.
inline constexpr std::string_view state_slot_paths[2] = {"grub/nixboot-state.a", "grub/nixboot-state.b"};
inline constexpr std::string_view state_slot_magic = "nixboot-grub-state-slot 1";

// One copy as stored: a header line
//   "nixboot-grub-state-slot 1 seq=N length=L sha256=HEX\n"
// then the L bytes of format_state() output, then '\n' padding up to the
// file's size (so the next write of the same slot fits in place). The
// higher seq of the intact copies is the state; a torn write fails the
// checksum and its copy is ignored.
struct StateSlot {
    std::uint64_t seq = 0;
    GrubState state;
};
// Throws ParseError "ORIGIN: REASON" for a damaged or foreign copy.
StateSlot parse_state_slot(std::string_view text, std::string_view origin);
// The header of a copy, checked against its body (magic, length, checksum)
// without parsing the state: the sequence number and the state's JSON text
// (a view into `text`). Throws ParseError as parse_state_slot.
struct CheckedSlot {
    std::uint64_t seq = 0;
    std::string_view json;
};
CheckedSlot check_state_slot(std::string_view text, std::string_view origin);
// The copy for `state` with sequence `seq`, padded with '\n' to `size` bytes
// when it fits there, else to the next multiple of 4096 bytes that leaves at
// least a quarter of the text (and 2048 bytes) free for growth.
std::string format_state_slot(const GrubState& state, std::uint64_t seq, std::size_t size = 0);

// Puts entries into menu order: generation descending, main entry before its
// specialisations, specialisations by name.
void sort_entries(std::vector<EntryRecord>& entries);

}  // namespace nixboot::grub
