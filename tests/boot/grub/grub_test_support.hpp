// Helpers shared by the GRUB tests: a temporary directory per test (the core
// tests' TempDir) and running the real GRUB tools (grub-editenv, grub-script-check) with captured output.
#pragma once

#include "tests/boot/util/test_support.hpp"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace nixboot::grub::test {

// The core tests' temporary directory.
using nixboot::test::TempDir;

struct RunResult {
    int status = -1;     // exit status, or -1 if it did not exit normally
    std::string output;  // stdout and stderr together
};

// Quotes one word for /bin/sh.
inline std::string sh_quote(const std::string& word) {
    std::string out = "'";
    for (char c : word) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

// Runs argv through /bin/sh with stderr folded into stdout.
inline RunResult run(const std::vector<std::string>& argv) {
    std::string cmd;
    for (const auto& a : argv) cmd += sh_quote(a) + " ";
    cmd += "2>&1";
    RunResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) throw std::runtime_error("popen failed");
    std::array<char, 4096> buf{};
    std::size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
    int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void spit(const std::filesystem::path& p, const std::string& data) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << data;
}

}  // namespace nixboot::grub::test
