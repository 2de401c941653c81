// EFI variable payloads (boot/efivars.*, boot/health/detect.*): the input is
// an efivarfs file (4 attribute bytes, then the data) read as each kind of
// variable nixboot reads; refusals are Error only, a string read back is
// written and read again unchanged, and LoaderBootCountPath, the one variable
// that decides a trial, is validated as detect_boot uses it (which never throws).
#include "boot/efivars.hpp"
#include "boot/health/cmdline.hpp"
#include "boot/health/detect.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <cstdlib>
#include <fstream>
#include <string>

using namespace nixboot;
using namespace nixboot::health;

namespace {

const std::filesystem::path& scratch_dir() {
    static const std::filesystem::path dir = [] {
        const char* shm = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
        std::string pattern = std::string(shm) + "/nixboot-efivars-fuzz.XXXXXX";
        if (!::mkdtemp(pattern.data())) std::abort();
        return std::filesystem::path(pattern);
    }();
    return dir;
}

void put(const EfiVars& vars, std::string_view name, std::string_view bytes) {
    std::ofstream out(vars.file_of(name), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view file = fuzz::text(data, size);
    EfiVars vars(scratch_dir());
    FUZZ_CHECK(!vars.uses_libefivar());

    LoaderVars loader;
    put(vars, efivar_name::loader_boot_count_path, file);
    try {
        loader.boot_count_path = vars.get_string(efivar_name::loader_boot_count_path);
        // At most 4096 bytes of UTF-16, so at most 6144 of UTF-8.
        FUZZ_CHECK(size <= 4 + 4096 && loader.boot_count_path && loader.boot_count_path->size() <= 6144);
    } catch (const Error&) {}
    if (loader.boot_count_path) {
        try {
            const BootCountPath path = parse_boot_count_path(*loader.boot_count_path);
            FUZZ_CHECK(path.name.counter.has_value());
            FUZZ_CHECK(path.file.rfind("loader/entries/", 0) == 0);
        } catch (const ParseError&) {}
        vars.set_string(efivar_name::loader_entry_oneshot, *loader.boot_count_path);
        FUZZ_CHECK(vars.get_string(efivar_name::loader_entry_oneshot) == loader.boot_count_path);
        FUZZ_CHECK(vars.remove(efivar_name::loader_entry_oneshot));
    }
    loader.loader_info = "systemd-boot 252";
    for (const char* line :
         {"", "nixboot.entry=nixos-generation-5", "nixboot.entry=a nixboot.trial=a nixboot.consume=stage1"})
        (void)detect_boot(parse_kernel_cmdline(line), loader);

    put(vars, efivar_name::loader_features, file);
    try {
        FUZZ_CHECK(vars.get_u64(efivar_name::loader_features).has_value() && size == 12);
    } catch (const Error&) {}
    put(vars, efivar_name::loader_entries, file);
    try {
        const auto entries = vars.get_string_list(efivar_name::loader_entries);
        FUZZ_CHECK(entries && entries->size() <= size / 4);
    } catch (const Error&) {}
    return 0;
}
