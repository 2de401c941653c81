// What a target's `nixboot --json status` says, as the deployer reads it:
// a pure parser and the questions a deploy asks of it (which generation is
// new, whether the trial waits for a confirm, what became of it).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::deploy {

struct TargetEntry {
    std::string id;  // "nixos-generation-42"
    unsigned generation = 0;
    bool specialisation = false;
    std::string state;  // "good", "bad", "trial"
};

struct TargetTrial {  // status's live_trial
    std::string id;
    unsigned generation = 0;
    std::string kind;    // "live" | "reboot"
    std::string status;  // "armed" | "running" | "confirmed" | "reverting"
    bool awaiting_confirm = false;
    unsigned confirm_timeout = 0;
};

struct TargetRollback {  // status's rolled_back
    std::optional<unsigned> generation;
    std::string reason;
    std::string summary;
};

struct TargetStatus {
    std::optional<std::string> default_entry;
    std::vector<TargetEntry> entries;
    std::optional<TargetTrial> trial;
    std::optional<TargetRollback> rolled_back;
};

// Parses the JSON object `nixboot --json status` prints. Throws Error
// "unreadable status: REASON" for anything else (the target is untrusted).
TargetStatus parse_target_status(std::string_view json);

// The trial ID (32 hex digits) in the JSON object `nixboot --json try ...`
// prints; nullopt when it has none or it is not one.
std::optional<std::string> parse_trial_id(std::string_view json);

// The newest generation with an entry that is neither good nor bad (what
// `install` just wrote as a trial entry); nullopt when there is none.
std::optional<unsigned> newest_untried(const TargetStatus& status);

// The generation of the default entry, when it is a generation's entry.
std::optional<unsigned> default_generation(const TargetStatus& status);

// What the deployer sees of its trial of `generation` (ID `trial_id`).
enum class Seen {
    pending,           // not yet waiting for the confirm (booting, checking)
    awaiting_confirm,  // the trial's checks passed; it waits for `confirm ID`
    promoted,          // good and the default
    rolled_back,       // bad, or the rollback the status starts with is this one
};
Seen observe(const TargetStatus& status, unsigned generation, std::string_view trial_id);

// Why the target rolled back, from its status: the reason of its rolled_back
// record, or "" when the status does not say.
std::string rollback_reason(const TargetStatus& status, unsigned generation);

}  // namespace nixboot::deploy
