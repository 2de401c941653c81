// Boot Loader Specification Type #2 entries: the menu entries systemd-boot
// makes of a unified kernel image (a PE file with .osrel, .cmdline and
// .profile sections) in EFI/Linux on the ESP or the XBOOTLDR partition.
// nixboot never writes one; it reads them so that its model of the loader's
// menu (sort order, default choice, one-shot matches) has every entry the
// loader has.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

// One menu entry of a UKI.
struct UkiEntry {
    std::string id_suffix;  // "" for the first profile; "@ID" (or "@N") for the others
    std::string title;
    std::optional<std::string> version;
    std::optional<std::string> sort_key;  // IMAGE_ID, else ID
};

// The entries systemd-boot adds for the UKI open as `fd`, in its order; empty
// where it adds none (no .osrel, or no name in it). Throws ParseError naming
// `display` where the loader cannot read the file as a PE image (it skips
// the file then). Follows systemd 258-262 src/boot/boot.c
// boot_entry_add_type2 and src/boot/pe.c (pe_section_table_from_file,
// pe_locate_profile_sections); loaders before 257 read no .profile, which
// only a multi-profile UKI tells apart.
std::vector<UkiEntry> read_uki_entries(int fd, const std::string& display);

// os-release(5) text as systemd-boot reads it (line_get_key_value): KEY=VALUE
// lines, '#' comments and blank lines skipped, blanks around key and value
// dropped, one pair of matching quotes removed; the last of a key wins.
std::map<std::string, std::string> parse_os_release(std::string_view text);

}  // namespace nixboot
