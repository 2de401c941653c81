// The single Catch2 main; every other file in tests/ only defines test cases.
// It also keeps the skip bookkeeping of tests/catch.hpp: a run in which every
// test case that started was skipped exits with skip_return_code, which
// catch_discover_tests' SKIP_RETURN_CODE turns into a ctest skip.
#define CATCH_CONFIG_RUNNER  // Catch2 v2: this file holds the implementation and main (v3: a library)
#include "tests/catch.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#if NIXBOOT_CATCH2_MAJOR >= 3
using ListenerBase = Catch::EventListenerBase;
#else
using ListenerBase = Catch::TestEventListenerBase;
#endif

namespace {

std::string current;
std::set<std::string> started;
std::set<std::string> skipped;

struct SkipBookkeeping : ListenerBase {
    using ListenerBase::ListenerBase;
    void testCaseStarting(Catch::TestCaseInfo const& info) override {
        current = info.name;
        started.insert(info.name);
    }
};

}  // namespace

CATCH_REGISTER_LISTENER(SkipBookkeeping)

namespace nixboot::test {

void skip(const std::string& why) {
    std::cout << "SKIPPED: " << current << ": " << why << std::endl;
    skipped.insert(current);
    if (const char* log = std::getenv("NIXBOOT_TEST_SKIP_LOG")) {
        const std::string line = current + "\t" + why + "\n";
        int fd = ::open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            (void)!::write(fd, line.data(), line.size());  // one write: whole lines under parallel ctest
            ::close(fd);
        }
    }
}

std::string find_program(const std::string& name) {
    static const std::set<std::string> listed = [] {
        std::set<std::string> out;
        std::ifstream in(NIXBOOT_SOURCE_DIR "/scripts/requirements");
        for (std::string line; std::getline(in, line);) {
            std::istringstream words(line);
            std::string what;
            if (words >> what && what[0] != '#') out.insert(what);
        }
        return out;
    }();
    if (!listed.count(name)) {
        FAIL("the test calls '" << name << "', which scripts/requirements does not list");
    }
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path ? path : "");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        if (dir.empty()) continue;
        const std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return {};
}

}  // namespace nixboot::test

int main(int argc, char** argv) {
    // A test that forgets to point these at its own stand-in must never reach
    // the host's systemctl, systemd-run or reboot: they refuse by default
    // (tests that want them set their own, which wins).
    for (const char* name : {"NIXBOOT_SYSTEMCTL", "NIXBOOT_SYSTEMD_RUN", "NIXBOOT_REBOOT_COMMAND"})
        ::setenv(name, "/bin/false", 0);
    const int failures = Catch::Session().run(argc, argv);
    if (failures == 0 && !started.empty() && skipped == started) return nixboot::test::skip_return_code;
    return failures;
}
