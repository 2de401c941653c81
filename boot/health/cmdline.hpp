// The kernel command line as nixboot reads it: untrusted, bounded, and only
// the `nixboot.*` parameters are interpreted (see docs/contracts.md).
// Pure and allocation-light: it is compiled into the static stage-1 hook.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::health {

// /proc/cmdline is at most a few KiB; anything past this is ignored (and said).
inline constexpr std::size_t max_cmdline_bytes = 16384;
// Longest entry ID accepted (a file name on a FAT ESP is at most 255 bytes).
inline constexpr std::size_t max_entry_id_bytes = 200;
// Largest watchdog timeout accepted from the command line, in seconds.
inline constexpr unsigned max_watchdog_seconds = 86400;

enum class ConsumeBy { bootloader, stage1 };

struct KernelCmdline {
    std::optional<std::string> entry;           // nixboot.entry=ID
    std::optional<unsigned> watchdog_seconds;   // nixboot.watchdog=SEC
    std::optional<std::string> grub_trial;      // nixboot.trial=ID (GRUB: armed trial)
    std::optional<unsigned> grub_tries_left;    // nixboot.tries=N (GRUB: left after this boot)
    ConsumeBy consume = ConsumeBy::bootloader;  // nixboot.consume=stage1
    // One line per rejected or unknown nixboot.* parameter, for /dev/kmsg.
    std::vector<std::string> problems;

    bool operator==(const KernelCmdline&) const = default;
};

// Splits like the kernel (whitespace, double quotes group and are dropped),
// keeps the last of repeated parameters, never throws on garbage: every
// nixboot.* parameter it cannot accept becomes one entry in `problems`.
KernelCmdline parse_kernel_cmdline(std::string_view text);

// The nixboot.* parameters of `cmdline` as text (the inverse of the parser on
// its accepted fields): what the GRUB and systemd-boot backends put on the
// kernel line. Problems are not formatted.
std::string format_kernel_cmdline(const KernelCmdline& cmdline);

// True if `id` is an acceptable entry ID: 1..max_entry_id_bytes of
// [A-Za-z0-9._-], not starting with '.' or '-'.
bool valid_entry_id(std::string_view id);

// Strict decimal: digits only, no sign, no leading '+', at most `max`.
std::optional<unsigned> parse_decimal(std::string_view text, unsigned max);

}  // namespace nixboot::health
