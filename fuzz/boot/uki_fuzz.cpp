// Type #2 UKIs (boot/uki.*): any bytes as an image in EFI/Linux. The reader
// refuses with ParseError or gives at most one entry per profile (256): the
// first profile's without an ID suffix (only ever the first entry; a first
// profile without a name has none) and the others with an "@" one; os-release
// parsing never keeps a key with '=' or a line break in it.
#include "boot/uki.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

#include <sys/mman.h>
#include <unistd.h>

using namespace nixboot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    for (const auto& [key, value] : parse_os_release(fuzz::text(data, size))) {
        FUZZ_CHECK(key.find('=') == std::string::npos);
        FUZZ_CHECK(key.find('\n') == std::string::npos && value.find('\n') == std::string::npos);
    }
    const int fd = ::memfd_create("uki", 0);
    if (fd < 0) return 0;
    if (::write(fd, data, size) != static_cast<ssize_t>(size)) {
        ::close(fd);
        return 0;
    }
    try {
        auto entries = read_uki_entries(fd, "uki.efi");
        FUZZ_CHECK(entries.size() <= 256);
        for (std::size_t i = 0; i < entries.size(); ++i)
            FUZZ_CHECK(entries[i].id_suffix.empty() ? i == 0 : entries[i].id_suffix.starts_with("@"));
    } catch (const ParseError&) {}
    ::close(fd);
    return 0;
}
