// grub.cfg generation: pure, from menu entries + default + env placement to
// text. The armed trial and the current default are read from grubenv at
// boot, so arming, promoting and rolling back never rewrite grub.cfg. The preamble implements nixboot's counted one-shot trial
// in upstream GRUB script (no arithmetic: literal comparisons), under the
// private grubenv names of docs/contracts.md. docs/grub.md explains the
// generated file and the states it handles.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::grub {

// The largest number of tries a trial can be armed with: the decrement table
// in grub.cfg has one comparison per value.
inline constexpr unsigned max_tries = 32;

// Who consumes a try when a trial boots.
enum class EnvWriter {
    grub,    // GRUB save_envs the decrement before loading the kernel
    stage1,  // GRUB cannot write the block (btrfs, LVM, RAID, crypto...):
             // it only reads it, nixboot-stage1 writes the decrement
};

// Where GRUB reads (and writes) the env block.
struct EnvLocation {
    // Empty: beside grub.cfg ("${prefix}/grubenv"). Otherwise GRUB finds the
    // filesystem with this UUID (`search --fs-uuid`, e.g. the ESP) and uses
    // `path` on it.
    std::string fs_uuid;
    std::string path;  // GRUB path on that filesystem, e.g. "/grub/grubenv"
    EnvWriter writer = EnvWriter::grub;
    bool operator==(const EnvLocation&) const = default;
};

struct MenuEntry {
    std::string id;                   // entry ID: nixos-generation-N[-specialisation-NAME]
    std::string title;                // menu title
    std::string kernel;               // GRUB path, e.g. "/kernels/abc-bzImage"
    std::string initrd;               // GRUB path; empty: no initrd
    std::vector<std::string> params;  // init=... and the generation's parameters
    bool operator==(const MenuEntry&) const = default;
};

struct GrubCfgSpec {
    std::vector<MenuEntry> entries;         // menu order (newest first)
    std::string default_id;                 // a good entry of `entries`: the default when
                                            // grubenv names none (also the first entry)
    EnvLocation env;
    unsigned timeout = 5;                   // seconds the menu shows
};

// Quotes one word for GRUB script: single quotes, a ' inside becomes '\''.
// Every byte but NUL survives; the caller refuses control characters where
// they would be wrong (kernel parameters).
std::string grub_quote(std::string_view word);

// "NixOS - Configuration 5 (2024-05-01 - 24.05.1234)" and, for a
// specialisation, "NixOS - Configuration 5 (NAME - 2024-05-01 - 24.05.1234)".
// `time` is shown as its UTC date; control characters become spaces.
std::string entry_title(unsigned generation, std::string_view specialisation, std::time_t time,
                        std::string_view version);

// The whole grub.cfg. Throws Error if default_id is not an entry, if an entry ID is not [A-Za-z0-9._-], or if a
// kernel parameter or path holds a control character (named in the message).
// Every kernel command line ends with "nixboot.entry=ID" and the dynamic
// nixboot.trial/nixboot.tries/nixboot.consume words of the armed trial.
std::string format_grub_cfg(const GrubCfgSpec& spec);

}  // namespace nixboot::grub
