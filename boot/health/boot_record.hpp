// /run/nixboot/boot: what nixboot-stage1 learned about this boot, for the late
// check (format in docs/contracts.md). Pure parse/format pair; no I/O here so
// the static stage-1 hook can link it without the rest of the library.
#pragma once

#include "boot/backend.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace nixboot::health {

enum class TrialBoot { no, yes };
enum class ConsumedBy { none, bootloader, stage1 };
enum class WatchdogState { off, armed, unavailable };

struct BootRecord {
    std::optional<Bootloader> bootloader;  // nullopt: "unknown"
    std::string entry;                     // entry ID, counter stripped ("" unknown)
    std::string file;                      // systemd-boot: "loader/entries/ID+L-D.conf"
    TrialBoot trial = TrialBoot::no;
    unsigned tries_left = 0;
    ConsumedBy consumed_by = ConsumedBy::none;
    WatchdogState watchdog = WatchdogState::off;

    bool operator==(const BootRecord&) const = default;
};

// Where stage 1 writes it, relative to the /run directory.
inline constexpr const char* boot_record_path = "nixboot/boot";
// Readers refuse anything larger.
inline constexpr std::size_t max_boot_record_bytes = 4096;

// key=value lines in the order of docs/contracts.md, ending in a newline.
std::string format_boot_record(const BootRecord& record);

// Inverse of format_boot_record. Unknown keys and blank lines are ignored;
// throws ParseError "ORIGIN:LINE: REASON" for a line without '=', a bad
// value of a known key, or text larger than max_boot_record_bytes.
BootRecord parse_boot_record(std::string_view text, std::string_view origin);

const char* to_string(ConsumedBy consumed) noexcept;  // "none" | "bootloader" | "stage1"
const char* to_string(WatchdogState state) noexcept;  // "off" | "armed" | "unavailable"

} // namespace nixboot::health
