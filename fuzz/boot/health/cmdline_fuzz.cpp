// The kernel command line (boot/health/cmdline.*): never throws, accepted
// values stay within their bounds, and the accepted nixboot.* fields format
// to a line that parses back to them with no problems.
#include "boot/health/cmdline.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot::health;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const KernelCmdline cmdline = parse_kernel_cmdline(nixboot::fuzz::text(data, size));
    if (cmdline.entry) FUZZ_CHECK(valid_entry_id(*cmdline.entry) && cmdline.entry->size() <= max_entry_id_bytes);
    if (cmdline.grub_trial) FUZZ_CHECK(valid_entry_id(*cmdline.grub_trial));
    if (cmdline.watchdog_seconds) FUZZ_CHECK(*cmdline.watchdog_seconds <= max_watchdog_seconds);
    FUZZ_CHECK(cmdline.problems.size() <= size / 2 + 1);

    const std::string formatted = format_kernel_cmdline(cmdline);
    KernelCmdline again = parse_kernel_cmdline(formatted);
    FUZZ_CHECK(again.problems.empty());
    KernelCmdline accepted = cmdline;
    accepted.problems.clear();
    FUZZ_CHECK(again == accepted);
    FUZZ_CHECK(format_kernel_cmdline(again) == formatted);
    return 0;
}
