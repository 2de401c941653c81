#include "boot/uki.hpp"

#include "boot/util/error.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>

#include <unistd.h>

namespace nixboot {

namespace {

// Sizes and offsets of the PE/COFF headers, as systemd's pe.c declares them.
constexpr std::size_t dos_header_size = 64;     // DosFileHeader
constexpr std::size_t exe_header_field = 0x3c;  // DosFileHeader.ExeHeader
constexpr std::size_t pe_header_size = 96;      // "PE\0\0", CoffFileHeader (20), PeOptionalHeader (72)
constexpr std::size_t section_header_size = 40;
constexpr std::size_t section_table_max = 16u * 1024 * 1024;  // SECTION_TABLE_BYTES_MAX
constexpr unsigned profiles_max = 256;                        // UNIFIED_PROFILES_MAX
// The loader reads the whole section; nixboot reads this much of an .osrel
// or .profile (an os-release is a few hundred bytes).
constexpr std::size_t text_section_max = 64 * 1024;

#if defined(__x86_64__)
constexpr std::uint16_t machine_type = 0x8664;
#elif defined(__aarch64__)
constexpr std::uint16_t machine_type = 0xaa64;
#else
constexpr std::uint16_t machine_type = 0;  // not checked
#endif

std::uint16_t le16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }
std::uint32_t le32(const unsigned char* p) {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

// pread of exactly `size` bytes at `offset`; false if the file is shorter.
bool read_at(int fd, std::uint64_t offset, void* buf, std::size_t size, const std::string& display) {
    auto* out = static_cast<unsigned char*>(buf);
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw SysError(errno, "reading '" + display + "'");
        }
        if (n == 0) return false;
        done += static_cast<std::size_t>(n);
    }
    return true;
}

struct Section {
    std::string name;  // up to 8 bytes, NUL-padded in the file
    std::uint32_t virtual_size = 0, raw_size = 0, raw_offset = 0;
};

// The sections one profile sees (PeSectionVector): the first of each name
// between `begin` and `end` wins.
const Section* find(const std::vector<Section>& table, std::size_t begin, std::size_t end, std::string_view name) {
    for (std::size_t i = begin; i < end; ++i)
        if (table[i].name == name) return &table[i];
    return nullptr;
}

std::string read_section(int fd, const Section& s, const std::string& display) {
    std::size_t size = std::min<std::size_t>({s.raw_size, s.virtual_size, text_section_max});
    std::string text(size, '\0');
    if (!read_at(fd, s.raw_offset, text.data(), size, display)) text.clear();
    // The loader reads it as a NUL-terminated string.
    if (auto nul = text.find('\0'); nul != std::string::npos) text.resize(nul);
    return text;
}

const std::string* get(const std::map<std::string, std::string>& kv, const char* key) {
    auto it = kv.find(key);
    return it == kv.end() ? nullptr : &it->second;
}

}  // namespace

std::map<std::string, std::string> parse_os_release(std::string_view text) {
    std::map<std::string, std::string> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find_first_of("\r\n", pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
        if (line.empty() || line.front() == '#') continue;
        auto eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view key = line.substr(0, eq);
        std::string_view value = line.substr(eq + 1);
        while (!value.empty() && value.front() == '=') value.remove_prefix(1);
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
        out[std::string(key)] = std::string(value);
    }
    return out;
}

std::vector<UkiEntry> read_uki_entries(int fd, const std::string& display) {
    auto bad = [&](const std::string& why) { return ParseError(display + ": " + why + " (the loader skips it)"); };
    std::array<unsigned char, dos_header_size> dos{};
    if (!read_at(fd, 0, dos.data(), dos.size(), display) || dos[0] != 'M' || dos[1] != 'Z')
        throw bad("not a PE image (no MZ header)");
    const std::uint32_t exe = le32(dos.data() + exe_header_field);
    if (exe < dos_header_size) throw bad("not a PE image (bad PE header offset)");
    std::array<unsigned char, pe_header_size> pe{};
    if (!read_at(fd, exe, pe.data(), pe.size(), display) || std::memcmp(pe.data(), "PE\0\0", 4) != 0)
        throw bad("not a PE image (no PE signature)");
    const std::uint16_t machine = le16(pe.data() + 4);
    const std::uint16_t n_sections = le16(pe.data() + 6);
    const std::uint16_t optional_size = le16(pe.data() + 20);
    const std::uint16_t optional_magic = le16(pe.data() + 24);
    if (machine_type != 0 && machine != machine_type) throw bad("a PE image for another machine type");
    if (n_sections == 0 || (optional_magic != 0x10b && optional_magic != 0x20b))
        throw bad("not a PE image (no sections or no optional header)");
    const std::size_t table_size = std::size_t{n_sections} * section_header_size;
    if (table_size > section_table_max) throw bad("its section table is too large");
    std::string raw(table_size, '\0');
    if (!read_at(fd, std::uint64_t{exe} + 24 + optional_size, raw.data(), raw.size(), display))
        throw bad("its section table is cut short");
    std::vector<Section> table;
    for (std::size_t i = 0; i < n_sections; ++i) {
        const auto* h = reinterpret_cast<const unsigned char*>(raw.data()) + i * section_header_size;
        Section s;
        s.name.assign(reinterpret_cast<const char*>(h), strnlen(reinterpret_cast<const char*>(h), 8));
        s.virtual_size = le32(h + 8);
        s.raw_size = le32(h + 16);
        s.raw_offset = le32(h + 20);
        table.push_back(std::move(s));
    }
    // Profile N runs from the N-th .profile section to the next; the base
    // (what every profile starts from) from the start to the first.
    std::vector<std::size_t> starts;
    for (std::size_t i = 0; i < table.size(); ++i)
        if (table[i].name == ".profile") starts.push_back(i);
    const std::size_t base_end = starts.empty() ? table.size() : starts.front();
    // A section of the profile, else of the base.
    auto section = [&](std::optional<std::size_t> profile, std::string_view name) -> const Section* {
        if (profile) {
            std::size_t b = starts[*profile];
            std::size_t e = *profile + 1 < starts.size() ? starts[*profile + 1] : table.size();
            if (const Section* s = find(table, b, e, name)) return s;
        }
        return find(table, 0, base_end, name);
    };
    std::vector<UkiEntry> out;
    for (unsigned p = 0; p < profiles_max; ++p) {
        std::optional<std::size_t> profile;
        if (p < starts.size())
            profile = p;
        else if (p > 0)
            break;  // no such profile: the loader stops
        const Section* osrel = section(profile, ".osrel");
        if (!osrel || osrel->virtual_size == 0) continue;
        auto os = parse_os_release(read_section(fd, *osrel, display));
        // bootspec_pick_name_version_sort_key (src/fundamental/bootspec-fundamental.c)
        const std::string* name = get(os, "PRETTY_NAME");
        if (!name) name = get(os, "IMAGE_ID");
        if (!name) name = get(os, "NAME");
        if (!name) name = get(os, "ID");
        if (!name) continue;
        UkiEntry e;
        for (const char* k : {"IMAGE_VERSION", "VERSION", "VERSION_ID", "BUILD_ID"})
            if (const std::string* v = get(os, k)) {
                e.version = *v;
                break;
            }
        for (const char* k : {"IMAGE_ID", "ID"})
            if (const std::string* v = get(os, k)) {
                e.sort_key = *v;
                break;
            }
        std::optional<std::string> profile_id, profile_title;
        if (profile) {
            const Section* ps = &table[starts[*profile]];
            if (ps->virtual_size != 0) {
                auto kv = parse_os_release(read_section(fd, *ps, display));
                if (const std::string* v = get(kv, "ID")) profile_id = *v;
                if (const std::string* v = get(kv, "TITLE")) profile_title = *v;
            }
        }
        if (p > 0) e.id_suffix = "@" + profile_id.value_or(std::to_string(p));
        if (profile_title)
            e.title = *name + " (" + *profile_title + ")";
        else if (p > 0)
            e.title = *name + " (" + (profile_id ? *profile_id : "Profile #" + std::to_string(p + 1)) + ")";
        else
            e.title = *name;
        out.push_back(std::move(e));
        // The loader returns from the whole UKI at the first profile without
        // a .cmdline section (boot_entry_add_type2: `return`, not `continue`).
        const Section* cmdline = section(profile, ".cmdline");
        if (!cmdline || cmdline->virtual_size == 0) break;
    }
    return out;
}

}  // namespace nixboot
