// What booted, and is it a trial? Decided from the kernel command line and the
// loader's EFI variables alone (pure), by stage 1 and again by `nixboot
// check` when /run/nixboot/boot is missing.
#pragma once

#include "boot/counter.hpp"
#include "boot/health/boot_record.hpp"
#include "boot/health/cmdline.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::health {

struct BootCountPath {
    std::string file;  // "loader/entries/NAME+L-D.conf", relative to the ESP
    EntryName name;    // parsed; always has a counter
};

// Validates LoaderBootCountPath as systemd-bless-boot does, and more narrowly:
// absolute ('\' first), normalized (no empty, "." or ".." component, no '/'),
// directly under \loader\entries\, a ".conf" name with a counter. Throws
// ParseError "LoaderBootCountPath 'VALUE': REASON".
BootCountPath parse_boot_count_path(std::string_view value);

// What the firmware variables said (decoded; nullopt when absent).
struct LoaderVars {
    std::optional<std::string> boot_count_path;  // LoaderBootCountPath
    std::optional<std::string> loader_info;      // LoaderInfo
};

struct Detection {
    BootRecord record;                  // watchdog left off: the caller arms it
    std::vector<std::string> problems;  // one line each, for kmsg or the log
};

// systemd-boot: a valid counted LoaderBootCountPath means a trial, consumed by
// the bootloader. GRUB (no LoaderInfo, nixboot.entry= on the command line): a
// trial when nixboot.trial= names the booted entry; with nixboot.consume=stage1
// the try is still to be consumed (consumed_by none). Never throws.
Detection detect_boot(const KernelCmdline& cmdline, const LoaderVars& vars);

}  // namespace nixboot::health
