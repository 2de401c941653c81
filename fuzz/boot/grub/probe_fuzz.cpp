// The injected grub-probe result (boot/grub/probe.*, --grub-probe-override):
// refusals are UsageError only, and what parses names a file system.
#include "boot/grub/probe.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

using namespace nixboot;
using namespace nixboot::grub;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const FsInfo info = parse_probe_override(fuzz::text(data, size), "probe");
        FUZZ_CHECK(info.fs.size() + info.fs_uuid.size() <= size);
    } catch (const UsageError&) {}
    return 0;
}
