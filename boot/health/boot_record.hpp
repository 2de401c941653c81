// /run/nixboot/boot: what nixboot-stage1 learned about this boot, for the late
// check (format in docs/contracts.md). Pure parse/format pair; no I/O here so
// the static stage-1 hook can link it without the rest of the library.
#pragma once

#include "boot/backend.hpp"
#include "boot/util/error.hpp"

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

// One line of a `key=value` file (the boot record, STATE/live).
struct KeyValueLine {
    std::string_view key, value;
    std::string_view origin;
    unsigned line = 0;
    // Throws ParseError "ORIGIN:LINE: why".
    [[noreturn]] void fail(const std::string& why) const {
        throw ParseError(std::string(origin) + ":" + std::to_string(line) + ": " + why);
    }
    [[noreturn]] void bad_value() const {
        fail("bad value '" + std::string(value) + "' for '" + std::string(key) + "'");
    }
};

// Calls fn(const KeyValueLine&) for each non-empty line of `text`; a line
// without '=' is a ParseError naming origin and line.
template <class Fn>
void for_each_key_value(std::string_view text, std::string_view origin, Fn&& fn) {
    unsigned line_no = 0;
    while (!text.empty()) {
        ++line_no;
        const auto nl = text.find('\n');
        const std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line.empty()) continue;
        const auto eq = line.find('=');
        KeyValueLine kv{line.substr(0, eq), {}, origin, line_no};
        if (eq == std::string_view::npos) kv.fail("line has no '='");
        kv.value = line.substr(eq + 1);
        fn(kv);
    }
}

}  // namespace nixboot::health
