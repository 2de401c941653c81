// Kernel parameters through GRUB's `linux` command. GRUB does not pass its
// arguments verbatim: it joins them into the kernel command line with its
// own quoting, which the kernel does not undo. These functions say what GRUB
// writes and, from that, which arguments make the kernel read a bootspec's
// kernelParams exactly as it reads them from systemd-boot's `options` line.
#pragma once

#include "boot/linux_cmdline.hpp"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::grub {

// What GRUB writes on the kernel command line for one argument of `linux`:
// a port of grub_create_loader_cmdline() and check_arg() in
// grub-core/lib/cmdline.c, identical in GRUB 2.06 (Debian 12) and 2.12.
// Every '\\', '\'' and '"' gets a backslash before it, and an argument with a
// space is wrapped in double quotes. The kernel has no escape character, so
// the backslashes stay in the values it reads. (Fedora's GRUB also passes
// "\xHH" unchanged; no backslash is ever needed below, so both agree.)
std::string grub_cmdline_word(std::string_view arg);

// A kernel parameter GRUB cannot pass, and why.
struct UnpassableParam {
    std::string param;   // as in the bootspec
    std::string reason;  // e.g. "GRUB puts a backslash before every '\"' in it"
    bool operator==(const UnpassableParam&) const = default;
};

struct GrubLinuxArgs {
    std::vector<std::string> args;            // for `linux KERNEL ARGS...`, in order
    std::vector<UnpassableParam> unpassable;  // left out of `args`
    bool operator==(const GrubLinuxArgs&) const = default;
};

// The `linux` arguments for `params` (a bootspec's kernelParams, which
// systemd-boot writes verbatim, joined by spaces). Each element is split as
// the kernel splits it and every parameter becomes one argument,
// name[=value] with its quotes taken off: GRUB quotes a value with spaces
// itself (`acpi_osi="!Windows 2020"` becomes `acpi_osi=!Windows 2020`, which
// GRUB writes as `"acpi_osi=!Windows 2020"`, which the kernel reads as
// acpi_osi with the value `!Windows 2020`). An element is left out whole,
// with the reason, when one of its parameters would not reach the kernel
// unchanged (a '"', '\'' or '\\' in it, a 0xa0 byte without a space, an
// empty parameter) or when it ends inside double quotes.
GrubLinuxArgs grub_linux_args(std::span<const std::string> params);

}  // namespace nixboot::grub
