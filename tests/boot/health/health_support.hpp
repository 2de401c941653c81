// Helpers for the boot-health tests: fake efivarfs files, executable scripts
// that record their calls, a fake /proc tree for nixboot-stage1.
#pragma once

#include "boot/efivars.hpp"
#include "tests/boot/util/test_support.hpp"
#include "tests/cli/rig.hpp"

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace nixboot::test {

// An efivarfs-style file: 4-byte attributes, then `data` as is.
inline void write_efivar_raw(const std::filesystem::path& dir, const std::string& name, const std::string& data) {
    std::string bytes("\x06\x00\x00\x00", 4);
    bytes += data;
    write_file(dir / (name + "-" + loader_vendor_guid), bytes);
}

// UTF-16LE with a NUL terminator, as systemd-boot writes strings.
inline std::string utf16(const std::string& ascii) {
    std::string out;
    for (char c : ascii) {
        out += c;
        out += '\0';
    }
    out += std::string("\0\0", 2);
    return out;
}

// An executable file (mode 0755 unless given) with `text`.
inline void write_script(const std::filesystem::path& path, const std::string& text, mode_t mode = 0755) {
    write_file(path, text);
    ::chmod(path.c_str(), mode);
}

// A script that appends "NAME ARGS..." to `log` and exits with `status`.
inline void write_recorder(const std::filesystem::path& path, const std::filesystem::path& log, const std::string& name,
                           int status = 0) {
    write_script(
        path, "#!/bin/sh\necho \"" + name + " $*\" >> '" + log.string() + "'\nexit " + std::to_string(status) + "\n");
}

// The environment for running the real nixboot-stage1 in a test: a fake
// root (under `dir`) holding the initrd marker the hook requires, so every
// default path it falls back on is inside the test's directory too.
inline std::vector<std::string> stage1_env(const std::filesystem::path& dir) {
    const auto root = dir / "stage1-root";
    std::filesystem::create_directories(root / "etc");
    write_file(root / "etc/initrd-release", "");
    return {"NIXBOOT_STAGE1_ROOT=" + root.string()};
}

inline std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
        auto nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        out.push_back(text.substr(start, nl - start));
        start = nl + 1;
    }
    return out;
}

inline std::string read_or_empty(const std::filesystem::path& p) {
    return std::filesystem::exists(p) ? read_file(p) : "";
}

}  // namespace nixboot::test
