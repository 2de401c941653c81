#include "boot/util/crash_point.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace nixboot {

namespace {

struct CrashConfig {
    unsigned long long at = 0;  // 0: never
    bool torn = false;
    const char* log = nullptr;
};

const CrashConfig& config() {
    static const CrashConfig c = [] {
        CrashConfig out;
        out.log = std::getenv("NIXBOOT_CRASH_LOG");
        if (out.log && !*out.log) out.log = nullptr;
        if (const char* at = std::getenv("NIXBOOT_CRASH_AT"); at && *at) {
            char* end = nullptr;
            out.at = std::strtoull(at, &end, 10);
            out.torn = end && std::strcmp(end, ":torn") == 0;
        }
        return out;
    }();
    return c;
}

std::atomic<unsigned long long> g_count{0};
std::atomic<int> g_paused{0};

// One write(2) per line with O_APPEND: whole lines even from two processes.
void log_line(const char* log, const std::string& line) {
    const int fd = ::open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        const ssize_t ignored = ::write(fd, line.data(), line.size());
        (void)ignored;
        ::close(fd);
    }
}

}  // namespace

CrashMode crash_point(std::string_view kind, std::string_view path) {
    const CrashConfig& c = config();
    if ((c.at == 0 && !c.log) || g_paused.load() > 0) return CrashMode::none;
    const unsigned long long n = ++g_count;
    if (c.log) log_line(c.log, std::to_string(n) + " " + std::string(kind) + " " + std::string(path) + "\n");
    if (n != c.at) return CrashMode::none;
    if (!c.torn) crash_now();
    return CrashMode::torn;
}

void crash_log_barrier(std::string_view kind, std::string_view path) {
    const CrashConfig& c = config();
    if (c.log && g_paused.load() == 0) log_line(c.log, "- " + std::string(kind) + " " + std::string(path) + "\n");
}

void crash_now() { ::_exit(crash_exit_status); }

CrashPointsPaused::CrashPointsPaused() noexcept { ++g_paused; }
CrashPointsPaused::~CrashPointsPaused() { --g_paused; }

}  // namespace nixboot
