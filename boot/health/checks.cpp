#include "boot/health/checks.hpp"

#include "boot/health/cmdline.hpp"
#include "boot/util/error.hpp"
#include "boot/util/fd.hpp"
#include "boot/util/process.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace nixboot::health {

const char* to_string(CheckKind kind) noexcept { return kind == CheckKind::wanted ? "wanted" : "required"; }

const char* to_string(CheckOutcome outcome) noexcept {
    switch (outcome) {
        case CheckOutcome::passed: return "passed";
        case CheckOutcome::failed: return "failed";
        case CheckOutcome::timed_out: return "timed out";
        case CheckOutcome::not_started: break;
    }
    return "not started";
}

namespace {

std::string mode_text(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// Who may own a check or its directory: root, or the user running nixboot
// (who could run that file anyway: it gains nothing, and an unprivileged
// `nixboot check`, as in a build sandbox, can use its own files). For
// nixboot-check.service, which runs as root, that is root alone.
std::optional<std::string> owner_refusal(uid_t owner) {
    const uid_t self = ::geteuid();
    if (owner == 0 || owner == self) return std::nullopt;
    return "owned by uid " + std::to_string(owner) +
           (self == 0 ? ", not root" : ", not root or uid " + std::to_string(self) + " (who runs nixboot)");
}

// A directory a non-root user could change lets them swap the checks.
std::optional<std::string> directory_refusal(const std::filesystem::path& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return std::nullopt;  // reported elsewhere
    if (auto owner = owner_refusal(st.st_uid)) return "directory '" + dir.string() + "' is " + *owner;
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return "directory '" + dir.string() + "' is writable by group or others (mode " + mode_text(st.st_mode) + ")";
    return std::nullopt;
}

std::chrono::milliseconds timeout_for(const std::string& name, const CheckSettings& settings) {
    auto section = settings.sections.find(name);
    if (section != settings.sections.end()) {
        auto t = section->second.find("timeout");
        if (t != section->second.end()) {
            auto seconds = parse_decimal(t->second, 86400);
            if (!seconds || *seconds == 0)
                throw UsageError("[check." + name + "] timeout: '" + t->second +
                                 "' is not a number of seconds from 1 to 86400");
            return std::chrono::seconds(*seconds);
        }
    }
    return settings.default_timeout;
}

std::vector<std::string> list_names(const std::filesystem::path& dir) {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT) return names;
        throw_errno("listing checks directory '" + dir.string() + "'");
    }
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

std::optional<std::string> refusal_reason(const struct stat& st) {
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    if (auto owner = owner_refusal(st.st_uid)) return owner;
    if (st.st_mode & (S_IWGRP | S_IWOTH)) return "writable by group or others (mode " + mode_text(st.st_mode) + ")";
    if (!(st.st_mode & S_IXUSR)) return "not executable (mode " + mode_text(st.st_mode) + ")";
    return std::nullopt;
}

CheckDiscovery discover_checks(const std::filesystem::path& dir, const CheckSettings& settings) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) throw_errno("checks directory '" + dir.string() + "'");
    if (!S_ISDIR(st.st_mode)) throw Error("checks directory '" + dir.string() + "': not a directory");
    CheckDiscovery out;
    for (const std::string& name : list_names(dir))
        if (name != to_string(CheckKind::required) && name != to_string(CheckKind::wanted))
            out.ignored.push_back("'" + (dir / name).string() + "' is ignored: a check goes in '" +
                                  (dir / "required").string() + "/' (the trial fails without it) or '" +
                                  (dir / "wanted").string() + "/' (reported only)");
    auto top_refusal = directory_refusal(dir);
    for (CheckKind kind : {CheckKind::required, CheckKind::wanted}) {
        std::filesystem::path sub = dir / to_string(kind);
        auto dir_refusal = top_refusal ? top_refusal : directory_refusal(sub);
        for (const std::string& name : list_names(sub)) {
            std::filesystem::path path = sub / name;
            auto refuse = [&](std::string reason) { out.refused.push_back({name, kind, path, std::move(reason)}); };
            if (dir_refusal) {
                refuse(*dir_refusal);
                continue;
            }
            struct stat cst {};
            if (::stat(path.c_str(), &cst) != 0) {
                refuse(std::strerror(errno));
                continue;
            }
            if (auto why = refusal_reason(cst)) {
                refuse(*why);
                continue;
            }
            out.checks.push_back({name, kind, path, {}, timeout_for(name, settings), {}, default_max_line_bytes});
        }
    }
    return out;
}

std::string describe(const CheckResult& r) {
    std::string out = r.name + " (" + to_string(r.kind) + "): " + to_string(r.outcome);
    if (r.outcome == CheckOutcome::passed)
        out += " in " + std::to_string(r.duration.count()) + " ms";
    else if (!r.detail.empty())
        out += " (" + r.detail + ")";
    return out;
}

namespace {

using Clock = std::chrono::steady_clock;
// After a check's main process ended and its group was killed, how long its
// pipe may stay open (a process that left the group) before we stop reading.
constexpr std::chrono::milliseconds drain_bound{1000};

struct Running {
    const CheckSpec* spec = nullptr;
    CheckResult result;
    pid_t pid = -1;
    Fd out;
    std::string partial;
    Clock::time_point started, deadline;
    std::optional<Clock::time_point> exited;
    bool reaped = false;
};

void emit(Running& r, std::string_view text, const OutputSink& sink) {
    if (sink) sink(r.spec->name + ": " + std::string(text));
}

void consume_output(Running& r, std::string_view data, const OutputSink& sink) {
    for (char c : data) {
        if (c == '\n') {
            emit(r, r.partial, sink);
            r.partial.clear();
            continue;
        }
        r.partial += c;
        if (r.partial.size() >= r.spec->max_line_bytes) {
            emit(r, r.partial, sink);
            r.partial.clear();
        }
    }
}

void finish_output(Running& r, const OutputSink& sink) {
    if (!r.partial.empty()) {
        emit(r, r.partial, sink);
        r.partial.clear();
    }
    r.out = Fd();
}

void start(Running& r) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        r.result.detail = std::string("creating a pipe: ") + std::strerror(errno);
        return;
    }
    Fd read_end(fds[0]), write_end(fds[1]);
    SpawnOptions options;
    options.stdin_null = true;
    options.stdout_fd = write_end.get();
    options.stderr_fd = write_end.get();
    options.own_process_group = true;  // a timeout kills the check's whole group
    options.search_path = false;
    options.extra_env = r.spec->env;
    std::vector<std::string> argv{r.spec->path.string()};
    argv.insert(argv.end(), r.spec->args.begin(), r.spec->args.end());
    r.started = Clock::now();
    r.deadline = r.started + r.spec->timeout;
    try {
        r.pid = spawn_process(argv, options);
    } catch (const SysError& e) {
        r.pid = -1;
        r.result.detail = "could not start '" + r.spec->path.string() + "': " + std::strerror(e.errno_value());
        return;
    }
    r.out = std::move(read_end);
}

void record_exit(Running& r, int status) {
    r.reaped = true;
    r.result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - r.started);
    if (r.result.outcome == CheckOutcome::timed_out) return;  // killed by us: detail already set
    if (WIFEXITED(status)) {
        r.result.exit_code = WEXITSTATUS(status);
        if (*r.result.exit_code == 0) {
            r.result.outcome = CheckOutcome::passed;
        } else {
            r.result.outcome = CheckOutcome::failed;
            r.result.detail = "exit status " + std::to_string(*r.result.exit_code);
        }
    } else if (WIFSIGNALED(status)) {
        r.result.signal = WTERMSIG(status);
        r.result.outcome = CheckOutcome::failed;
        r.result.detail = std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
    }
}

}  // namespace

std::vector<CheckResult> run_checks(const std::vector<CheckSpec>& checks, const OutputSink& sink) {
    std::vector<Running> runs(checks.size());
    for (std::size_t i = 0; i < checks.size(); ++i) {
        runs[i].spec = &checks[i];
        runs[i].result.name = checks[i].name;
        runs[i].result.kind = checks[i].kind;
        start(runs[i]);
    }
    while (true) {
        auto now = Clock::now();
        bool busy = false;
        for (Running& r : runs) {
            if (r.pid < 0) continue;
            if (!r.reaped) {
                int status = 0;
                pid_t got = ::waitpid(r.pid, &status, WNOHANG);
                if (got == r.pid) {
                    record_exit(r, status);
                    r.exited = now;
                    ::kill(-r.pid, SIGKILL);  // stragglers of the group
                } else if (now >= r.deadline && r.result.outcome != CheckOutcome::timed_out) {
                    ::kill(-r.pid, SIGKILL);
                    r.result.outcome = CheckOutcome::timed_out;
                    auto ms = r.spec->timeout.count();
                    r.result.detail = "killed after the " +
                                      (ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms") +
                                      " timeout";
                }
            }
            if (r.out && r.exited && now - *r.exited > drain_bound) finish_output(r, sink);
            if (!r.reaped || r.out) busy = true;
        }
        if (!busy) break;
        std::vector<pollfd> pfds;
        std::vector<Running*> owners;
        for (Running& r : runs)
            if (r.out) {
                pfds.push_back({r.out.get(), POLLIN, 0});
                owners.push_back(&r);
            }
        ::poll(pfds.data(), pfds.size(), 20);
        for (std::size_t i = 0; i < pfds.size(); ++i) {
            if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            ssize_t n = ::read(pfds[i].fd, buf, sizeof buf);
            if (n > 0)
                consume_output(*owners[i], std::string_view(buf, static_cast<std::size_t>(n)), sink);
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                finish_output(*owners[i], sink);
        }
    }
    std::vector<CheckResult> results;
    for (Running& r : runs) results.push_back(std::move(r.result));
    return results;
}

}  // namespace nixboot::health
