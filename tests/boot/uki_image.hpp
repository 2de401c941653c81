// A minimal PE32+ image with named sections, as a stand-in for a unified
// kernel image in tests: the headers systemd-boot reads (DOS header, PE
// signature, COFF header, optional header magic, section table) and each
// section's bytes. Nothing in it runs.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nixboot::test {

inline std::string make_uki(const std::vector<std::pair<std::string, std::string>>& sections) {
    constexpr std::size_t pe = 0x40, optional_size = 0xf0;
    const std::size_t table = pe + 24 + optional_size;
    std::size_t data = (table + sections.size() * 40 + 0x1ff) & ~std::size_t{0x1ff};
    std::string out(data, '\0');
    auto put16 = [&](std::size_t at, std::uint32_t v) {
        out[at] = static_cast<char>(v & 0xff);
        out[at + 1] = static_cast<char>((v >> 8) & 0xff);
    };
    auto put32 = [&](std::size_t at, std::uint32_t v) {
        put16(at, v & 0xffff);
        put16(at + 2, v >> 16);
    };
    out[0] = 'M';
    out[1] = 'Z';
    put32(0x3c, pe);
    out.replace(pe, 4, std::string("PE\0\0", 4));
    put16(pe + 4, 0x8664);
    put16(pe + 6, static_cast<std::uint32_t>(sections.size()));
    put16(pe + 20, optional_size);
    put16(pe + 24, 0x20b);  // PE32+
    for (std::size_t i = 0; i < sections.size(); ++i) {
        const auto& [name, bytes] = sections[i];
        const std::size_t h = table + i * 40;
        out.replace(h, name.size(), name);
        put32(h + 8, static_cast<std::uint32_t>(bytes.size()));       // VirtualSize
        put32(h + 12, static_cast<std::uint32_t>(0x1000 * (i + 1)));  // VirtualAddress
        const std::size_t raw = (bytes.size() + 0x1ff) & ~std::size_t{0x1ff};
        put32(h + 16, static_cast<std::uint32_t>(raw));         // SizeOfRawData
        put32(h + 20, static_cast<std::uint32_t>(out.size()));  // PointerToRawData
        out += bytes;
        out.resize(out.size() + raw - bytes.size(), '\0');
    }
    return out;
}

}  // namespace nixboot::test
