#include "stage1-hook/hook.hpp"

#include "boot/efivars.hpp"
#include "boot/grub/consume.hpp"
#include "boot/health/boot_record.hpp"
#include "boot/health/cmdline.hpp"
#include "boot/health/detect.hpp"
#include "boot/health/watchdog.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"
#include "boot/util/utf16.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <optional>
#include <string>
#include <string_view>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace nixboot::stage1 {

namespace {

using namespace nixboot::health;

// Hard bound on the hook: whatever hangs (a firmware variable read, a
// watchdog driver), the boot goes on after this.
constexpr unsigned time_bound_seconds = 3;

int kmsg_fd = 2;  // stderr until /dev/kmsg is open

// One line on /dev/kmsg with the given syslog level; never fails.
void say(int level, std::string_view message) {
    std::string line = "<" + std::to_string(level) + ">nixboot-stage1: ";
    for (char c : message) line += (c == '\n') ? ' ' : c;
    line += '\n';
    [[maybe_unused]] auto n = ::write(kmsg_fd, line.data(), line.size());
}
void problem(std::string_view message) { say(4, message); }
void info(std::string_view message) { say(6, message); }

void on_alarm(int) {
    static const char line[] = "<3>nixboot-stage1: time bound reached, giving up (boot continues)\n";
    [[maybe_unused]] auto n = ::write(kmsg_fd, line, sizeof line - 1);
    _exit(0);
}

struct Paths {
    std::string root;  // NIXBOOT_STAGE1_ROOT
    std::string cmdline, efivars, run, kmsg, config, uptime;
    std::optional<std::string> watchdog_device;  // option wins over the config
    std::vector<std::string> grubenv;            // candidates, first existing one wins
    std::optional<unsigned> feed_interval_ms;    // tests: faster feeding
};

// Reads at most `max` bytes of a small file; nullopt with errno set on failure.
std::optional<std::string> read_small(const std::string& path, std::size_t max) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return std::nullopt;
    std::string data(max + 1, '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        ssize_t n = ::read(fd, data.data() + got, data.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            ::close(fd);
            errno = e;
            return std::nullopt;
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    data.resize(got);
    return data;
}

std::string errno_text() { return std::strerror(errno); }

// Only the few top-level keys the hook needs, read leniently: the full config
// parser (boot/config.cpp) pulls iostreams, which a static initrd binary
// should not carry. Bad values are one problem line each and keep defaults.
struct HookConfig {
    unsigned watchdog_timeout = 120;
    unsigned verdict_timeout = 600;
    std::string watchdog_device = "/dev/watchdog";
};

HookConfig read_hook_config(const std::string& path) {
    HookConfig config;
    auto text = read_small(path, 65536);
    if (!text) {
        if (errno != ENOENT) problem("config '" + path + "': " + errno_text() + "; using defaults");
        return config;
    }
    std::string_view rest = *text;
    unsigned line_no = 0;
    auto trim = [](std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
        return s;
    };
    while (!rest.empty()) {
        ++line_no;
        auto nl = rest.find('\n');
        std::string_view line = trim(rest.substr(0, nl));
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        if (!line.empty() && line.front() == '[') break;  // sections: not ours
        auto eq = line.find('=');
        if (line.empty() || line.front() == '#' || line.front() == ';' || eq == std::string_view::npos) continue;
        std::string_view key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
        auto where = path + ":" + std::to_string(line_no) + ": ";
        if (key == "watchdog-timeout" || key == "verdict-timeout") {
            auto n = parse_decimal(value, max_watchdog_seconds);
            if (!n) {
                problem(where + std::string(key) + ": '" + std::string(value) +
                        "' is not a number of seconds; using the default");
                continue;
            }
            (key == "watchdog-timeout" ? config.watchdog_timeout : config.verdict_timeout) = *n;
        } else if (key == "watchdog-device") {
            if (value.empty() || value.front() != '/') {
                problem(where + "watchdog-device: not an absolute path; using /dev/watchdog");
                continue;
            }
            config.watchdog_device = std::string(value);
        }
    }
    return config;
}

std::optional<std::string> read_efi_string(const Paths& paths, const char* name) {
    std::string path = paths.efivars + "/" + name + "-" + loader_vendor_guid;
    auto raw = read_small(path, 4 + 4096);
    if (!raw) {
        if (errno != ENOENT) problem(std::string("EFI variable ") + name + " (" + path + "): " + errno_text());
        return std::nullopt;
    }
    try {
        if (raw->size() < 4) throw Error("shorter than its 4-byte attribute header");
        if (raw->size() > 4 + 4096 - 2) throw Error("longer than 4 KiB");
        std::span<const std::uint8_t> data(reinterpret_cast<const std::uint8_t*>(raw->data()) + 4, raw->size() - 4);
        bool terminated = data.size() >= 2 && data[data.size() - 1] == 0 && data[data.size() - 2] == 0;
        return utf16le_to_utf8(data, terminated ? Terminator::required : Terminator::forbidden);
    } catch (const Error& e) {
        problem(std::string("EFI variable ") + name + " (" + path + "): " + e.what());
        return std::nullopt;
    }
}

bool dir_has_entries(const std::string& path) {
    DIR* d = ::opendir(path.c_str());
    if (!d) return false;
    bool any = false;
    while (dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
            any = true;
            break;
        }
    }
    ::closedir(d);
    return any;
}

// The initrd may not have efivarfs mounted: mount it when the firmware is EFI.
void ensure_efivarfs(const Paths& paths) {
    struct stat st {};
    std::string efi = paths.efivars.substr(0, paths.efivars.rfind('/'));
    if (::stat(efi.c_str(), &st) != 0) return;  // not booted by EFI firmware
    if (dir_has_entries(paths.efivars)) return;
    ::mkdir(paths.efivars.c_str(), 0755);
    if (::mount("efivarfs", paths.efivars.c_str(), "efivarfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0 &&
        errno != EBUSY)
        problem("mounting efivarfs on " + paths.efivars + ": " + errno_text());
}

// Writes the record crash-safely enough for a tmpfs: temp file, rename.
void write_record(const Paths& paths, const BootRecord& record) {
    std::string dir = paths.run + "/nixboot";
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        problem("creating " + dir + ": " + errno_text());
        return;
    }
    std::string final_path = paths.run + "/" + boot_record_path;
    std::string tmp = final_path + ".tmp";
    std::string text = format_boot_record(record);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        problem("writing " + tmp + ": " + errno_text());
        return;
    }
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    int err = errno;
    if (::close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && ::rename(tmp.c_str(), final_path.c_str()) == 0) return;
    if (ok) err = errno;
    problem("writing " + final_path + ": " + std::strerror(err));
    ::unlink(tmp.c_str());
}

std::string with_root(const std::string& root, const std::string& path) { return root.empty() ? path : root + path; }

// Problems are said once per boot: by the hook, not again by the feeder.
enum class Report { problems, quiet };

KernelCmdline read_cmdline(const Paths& paths, Report report) {
    auto text = read_small(paths.cmdline, max_cmdline_bytes + 4096);
    if (!text) {
        if (report == Report::problems) problem("reading " + paths.cmdline + ": " + errno_text());
        return {};
    }
    KernelCmdline cmdline = parse_kernel_cmdline(*text);
    if (report == Report::problems)
        for (const auto& p : cmdline.problems) problem(p);
    return cmdline;
}

WatchdogState arm_watchdog(const std::string& device, unsigned timeout) {
    try {
        Watchdog dog = Watchdog::open(device);
        if (auto p = dog.set_timeout(timeout)) problem(*p);
        dog.feed();
        dog.hand_over();  // no magic close: it keeps running until fed or reset
        return WatchdogState::armed;
    } catch (const Error& e) {
        problem(std::string(e.what()) + "; trial boot without a watchdog");
        return WatchdogState::unavailable;
    }
}

// GRUB could not save its decrement (nixboot.consume=stage1): write it into
// the env block on the mounted root (grub::consume_try_in_userspace: only
// when the block still names this trial with more tries than GRUB put on the
// command line).
ConsumedBy consume_grub_try(const Paths& paths, const BootRecord& record, const KernelCmdline& cmdline) {
    std::string env_path;
    for (const auto& candidate : paths.grubenv) {
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0) {
            env_path = candidate;
            break;
        }
    }
    if (env_path.empty()) {
        std::string tried;
        for (const auto& c : paths.grubenv) tried += (tried.empty() ? "" : ", ") + c;
        problem("GRUB could not consume the try of " + record.entry + " and no grubenv was found (" + tried +
                "); left to the late check");
        return ConsumedBy::none;
    }
    try {
        switch (grub::consume_try_in_userspace(env_path, record.entry, cmdline.grub_tries_left.value_or(0))) {
            case grub::ConsumeResult::consumed:
            case grub::ConsumeResult::already_consumed: return ConsumedBy::stage1;
            case grub::ConsumeResult::not_armed: break;
        }
        problem(env_path + " does not name " + record.entry + " as the trial; nothing consumed");
        return ConsumedBy::none;
    } catch (const Error& e) {
        problem(std::string("consuming the GRUB try of ") + record.entry + ": " + e.what() +
                "; left to the late check");
        return ConsumedBy::none;
    }
}

void run(const Paths& paths) {
    KernelCmdline cmdline = read_cmdline(paths, Report::problems);
    HookConfig config = read_hook_config(paths.config);
    ensure_efivarfs(paths);
    LoaderVars vars;
    vars.boot_count_path = read_efi_string(paths, efivar_name::loader_boot_count_path);
    vars.loader_info = read_efi_string(paths, efivar_name::loader_info);
    Detection detection = detect_boot(cmdline, vars);
    for (const auto& p : detection.problems) problem(p);
    BootRecord record = detection.record;

    if (record.trial == TrialBoot::yes && record.consumed_by == ConsumedBy::none)
        record.consumed_by = consume_grub_try(paths, record, cmdline);

    unsigned timeout = cmdline.watchdog_seconds.value_or(config.watchdog_timeout);
    std::string device = paths.watchdog_device.value_or(with_root(paths.root, config.watchdog_device));
    if (record.trial == TrialBoot::yes && timeout > 0) record.watchdog = arm_watchdog(device, timeout);

    write_record(paths, record);
    if (record.trial == TrialBoot::yes)
        info("trial boot of " + record.entry + " (" + std::to_string(record.tries_left) + " tries left), watchdog " +
             to_string(record.watchdog) +
             (record.watchdog == WatchdogState::armed ? " " + std::to_string(timeout) + "s" : ""));
}

// ---- the feeder ------------------------------------------------------------

volatile sig_atomic_t stop_requested = 0;
void on_term(int) { stop_requested = 1; }

std::optional<double> uptime_seconds(const Paths& paths) {
    auto text = read_small(paths.uptime, 256);
    if (!text) return std::nullopt;
    char* end = nullptr;
    double value = std::strtod(text->c_str(), &end);
    if (end == text->c_str() || value < 0) return std::nullopt;
    return value;
}

std::optional<std::string> read_verdict(const Paths& paths) {
    auto text = read_small(paths.run + "/nixboot/verdict", 64);
    if (!text) return std::nullopt;
    return text->substr(0, text->find('\n'));  // "good" or "bad"; the reason follows
}

void feed(const Paths& paths) {
    auto text = read_small(paths.run + "/" + boot_record_path, max_boot_record_bytes);
    if (!text) return;  // not recorded: stage 1 armed nothing
    BootRecord record;
    try {
        record = parse_boot_record(*text, paths.run + "/" + boot_record_path);
    } catch (const Error& e) {
        problem(std::string(e.what()) + "; not feeding the watchdog");
        return;
    }
    if (record.watchdog != WatchdogState::armed) return;
    KernelCmdline cmdline = read_cmdline(paths, Report::quiet);
    HookConfig config = read_hook_config(paths.config);
    unsigned timeout = cmdline.watchdog_seconds.value_or(config.watchdog_timeout);
    std::string device = paths.watchdog_device.value_or(with_root(paths.root, config.watchdog_device));
    unsigned interval_ms = paths.feed_interval_ms.value_or(timeout > 3 ? timeout * 1000 / 3 : 1000);
    if (interval_ms > 1000) interval_ms = 1000;  // wake often: verdicts are noticed within a second
    unsigned feed_every_ms = paths.feed_interval_ms.value_or(timeout > 3 ? timeout * 1000 / 3 : 1000);

    std::optional<Watchdog> dog;
    try {
        dog = Watchdog::open(device);
    } catch (const Error& e) {
        problem(std::string(e.what()) + "; the watchdog armed in stage 1 will reset the machine");
        return;
    }
    struct sigaction sa {};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    info("feeding watchdog " + device + " until the verdict on " + record.entry + " (verdict timeout " +
         std::to_string(config.verdict_timeout) + "s)");
    unsigned since_feed_ms = feed_every_ms;  // feed at once
    while (true) {
        if (auto verdict = read_verdict(paths)) {
            try {
                dog->disarm();
                info("verdict '" + *verdict + "' on " + record.entry + ": watchdog disarmed");
            } catch (const Error& e) {
                problem(e.what());
            }
            return;
        }
        auto up = uptime_seconds(paths);
        if (up && *up >= config.verdict_timeout) {
            problem("trial boot of " + record.entry + " reached no verdict within " +
                    std::to_string(config.verdict_timeout) + "s; no longer feeding the watchdog");
            dog->hand_over();
            return;
        }
        if (stop_requested) {
            // Shutdown before a verdict: keep the timer running, so a shutdown
            // that hangs still ends in a reset (into the default entry).
            dog->hand_over();
            return;
        }
        if (since_feed_ms >= feed_every_ms) {
            try {
                dog->feed();
            } catch (const Error& e) {
                problem(e.what());
            }
            since_feed_ms = 0;
        }
        unsigned step = interval_ms < 100 ? interval_ms : 100;
        struct timespec ts {
            static_cast<time_t>(step / 1000), static_cast<long>(step % 1000) * 1000000L
        };
        nanosleep(&ts, nullptr);
        since_feed_ms += step;
    }
}

constexpr const char* usage_text =
    "Usage: nixboot-stage1 [run|feed] [OPTIONS]\n"
    "The nixboot hooks; nothing to run by hand.\n"
    "  run    (default) the initrd hook: record the boot in /run/nixboot/boot and arm the\n"
    "         watchdog on a trial boot. Refused outside the initrd (no /etc/initrd-release).\n"
    "  feed   the watchdog feeder of nixboot-watchdog.service.\n"
    "Options (tests): --cmdline FILE --efivars DIR --run DIR --kmsg FILE --config FILE\n"
    "  --uptime FILE --grubenv FILE --watchdog-device DEV --feed-interval-ms N; -h, --help.\n"
    "NIXBOOT_STAGE1_ROOT prefixes every default path. An unknown argument prints this and\n"
    "exits 2 without doing anything.\n";

struct Invocation {
    std::string mode;  // "run" or "feed"
    bool help = false;
    std::vector<std::string> bad_args;
};

Paths default_paths() {
    const char* root_env = std::getenv("NIXBOOT_STAGE1_ROOT");
    Paths paths;
    paths.root = root_env ? root_env : "";
    paths.cmdline = with_root(paths.root, "/proc/cmdline");
    paths.uptime = with_root(paths.root, "/proc/uptime");
    paths.efivars = with_root(paths.root, "/sys/firmware/efi/efivars");
    paths.run = with_root(paths.root, "/run");
    paths.kmsg = with_root(paths.root, "/dev/kmsg");
    paths.config = with_root(paths.root, "/etc/nixboot/nixboot.conf");
    // The root filesystem as the initrd mounted it: NixOS' scripted stage 1
    // (/mnt-root), systemd's initrd (/sysroot), or already the root.
    for (const char* sysroot : {"/mnt-root", "/sysroot", ""})
        paths.grubenv.push_back(with_root(paths.root, std::string(sysroot) + "/boot/grub/grubenv"));
    return paths;
}

// Pure: the mode and the paths the arguments name; nothing is opened.
Invocation parse_arguments(int argc, char** argv, Paths& paths) {
    std::string mode;
    std::vector<std::string> bad_args;
    bool help = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&](std::string& out) {
            if (i + 1 < argc)
                out = argv[++i];
            else
                bad_args.push_back(std::string(arg) + " needs a value");
        };
        std::string tmp;
        if ((arg == "run" || arg == "feed") && mode.empty())
            mode = arg;
        else if (arg == "--help" || arg == "-h")
            help = true;
        else if (arg == "--cmdline")
            value(paths.cmdline);
        else if (arg == "--efivars")
            value(paths.efivars);
        else if (arg == "--run")
            value(paths.run);
        else if (arg == "--kmsg")
            value(paths.kmsg);
        else if (arg == "--config")
            value(paths.config);
        else if (arg == "--uptime")
            value(paths.uptime);
        else if (arg == "--grubenv") {
            value(tmp);
            if (!tmp.empty()) paths.grubenv = {tmp};
        } else if (arg == "--watchdog-device") {
            value(tmp);
            if (!tmp.empty()) paths.watchdog_device = tmp;
        } else if (arg == "--feed-interval-ms") {
            value(tmp);
            if (auto n = parse_decimal(tmp, 600000); n && *n > 0)
                paths.feed_interval_ms = *n;
            else
                bad_args.push_back("--feed-interval-ms: '" + tmp + "' is not a number of milliseconds");
        } else
            bad_args.push_back("unknown argument '" + std::string(arg) + "'");
    }
    return Invocation{mode.empty() ? "run" : mode, help, bad_args};
}

}  // namespace

int main(int argc, char** argv) {
    // The bound comes first: nothing below, not even opening /dev/kmsg, may
    // hold up the boot. The feeder is the one part meant to run for long.
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, nullptr);
    alarm(time_bound_seconds);
    Paths paths = default_paths();
    Invocation inv = parse_arguments(argc, argv, paths);
    if (inv.mode == "feed") alarm(0);
    // A mistyped or curious call on a running system must not arm the
    // watchdog or rewrite the record: usage only, before anything is opened.
    if (inv.help || !inv.bad_args.empty()) {
        for (const auto& b : inv.bad_args) std::fprintf(stderr, "nixboot-stage1: %s\n", b.c_str());
        std::fputs(usage_text, inv.help && inv.bad_args.empty() ? stdout : stderr);
        return inv.bad_args.empty() ? 0 : 2;
    }
    // The hook belongs to the initrd; systemd's own test for it
    // (src/basic/initrd-util.c, in_initrd()) is /etc/initrd-release, which
    // NixOS's initrds carry and nixos/module.nix makes sure of.
    if (inv.mode == "run" && ::access(with_root(paths.root, "/etc/initrd-release").c_str(), F_OK) != 0) {
        std::fprintf(stderr,
                     "nixboot-stage1: not in the initrd (no %s): nothing done; the hook runs only in stage 1, "
                     "see 'nixboot status' on a running system\n",
                     with_root(paths.root, "/etc/initrd-release").c_str());
        return 1;
    }

    int fd = ::open(paths.kmsg.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY | O_APPEND | O_NONBLOCK);
    if (fd >= 0) kmsg_fd = fd;

    try {
        if (inv.mode == "feed")
            feed(paths);
        else
            run(paths);
    } catch (const std::exception& e) {
        problem(std::string("unexpected error: ") + e.what());
    } catch (...) {
        problem("unexpected error");
    }
    return 0;
}

}  // namespace nixboot::stage1
