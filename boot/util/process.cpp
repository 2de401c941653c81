#include "boot/util/process.hpp"

#include "boot/util/error.hpp"
#include "boot/util/fd.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <string_view>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace nixboot {

namespace {

constexpr std::size_t max_output = 1 << 20;

std::pair<Fd, Fd> make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("creating a pipe");
    return {Fd(fds[0]), Fd(fds[1])};
}

// posix_spawn's C structures, destroyed on every path.
struct SpawnAttributes {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    SpawnAttributes() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnAttributes() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnAttributes(const SpawnAttributes&) = delete;
    SpawnAttributes& operator=(const SpawnAttributes&) = delete;
};

std::vector<char*> pointers(std::vector<std::string>& strings) {
    std::vector<char*> out;
    for (auto& s : strings) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

}  // namespace

std::vector<std::string> environment_with(const std::vector<std::string>& extra) {
    std::vector<std::string> out;
    auto overridden = [&](std::string_view entry) {
        auto name = entry.substr(0, entry.find('=') + 1);
        return std::any_of(extra.begin(), extra.end(), [&](const std::string& e) { return e.starts_with(name); });
    };
    for (char** e = environ; *e; ++e)
        if (!overridden(*e)) out.emplace_back(*e);
    out.insert(out.end(), extra.begin(), extra.end());
    return out;
}

pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
    if (argv.empty()) throw Error("running an empty command");
    SpawnAttributes s;
    if (options.stdin_null) posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
    if (options.stdout_fd >= 0) posix_spawn_file_actions_adddup2(&s.actions, options.stdout_fd, 1);
    if (options.stderr_fd >= 0) posix_spawn_file_actions_adddup2(&s.actions, options.stderr_fd, 2);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    posix_spawnattr_setsigmask(&s.attr, &none);
    posix_spawnattr_setsigdefault(&s.attr, &defaults);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (options.own_process_group) {
        posix_spawnattr_setpgroup(&s.attr, 0);
        flags |= POSIX_SPAWN_SETPGROUP;
    }
    posix_spawnattr_setflags(&s.attr, flags);
    std::vector<std::string> args = argv;
    std::vector<char*> arg_pointers = pointers(args);
    std::vector<std::string> env;
    std::vector<char*> env_pointers;
    char** envp = environ;
    if (!options.extra_env.empty()) {
        env = environment_with(options.extra_env);
        env_pointers = pointers(env);
        envp = env_pointers.data();
    }
    pid_t pid = -1;
    const int err = options.search_path
                        ? posix_spawnp(&pid, args[0].c_str(), &s.actions, &s.attr, arg_pointers.data(), envp)
                        : posix_spawn(&pid, args[0].c_str(), &s.actions, &s.attr, arg_pointers.data(), envp);
    if (err != 0) throw SysError(err, "running '" + argv[0] + "'");
    return pid;
}

int wait_process(pid_t pid, const std::string& name) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) throw_errno("waiting for '" + name + "'");
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
}

int run_command(const std::vector<std::string>& argv) {
    const pid_t pid = spawn_process(argv);  // refuses an empty argv before argv[0] is read
    return wait_process(pid, argv[0]);
}

ProcessResult run_process(const std::vector<std::string>& argv) {
    auto [out_r, out_w] = make_pipe();
    auto [err_r, err_w] = make_pipe();
    SpawnOptions options;
    options.stdin_null = true;
    options.stdout_fd = out_w.get();
    options.stderr_fd = err_w.get();
    const pid_t pid = spawn_process(argv, options);
    out_w.close();
    err_w.close();

    ProcessResult result;
    std::array<pollfd, 2> pfds{{{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}}};
    std::array<std::string*, 2> sinks{&result.out, &result.err};
    int open_count = 2;
    std::array<char, 8192> buf{};
    while (open_count > 0) {
        if (::poll(pfds.data(), pfds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (std::size_t i = 0; i < pfds.size(); ++i) {
            if (pfds[i].fd < 0 || !(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            const ssize_t n = ::read(pfds[i].fd, buf.data(), buf.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                pfds[i].fd = -1;
                --open_count;
                continue;
            }
            if (sinks[i]->size() < max_output)
                sinks[i]->append(buf.data(),
                                 std::min<std::size_t>(static_cast<std::size_t>(n), max_output - sinks[i]->size()));
        }
    }
    result.exit_status = wait_process(pid, argv[0]);
    return result;
}

std::vector<std::string> command_from_env(const char* var, std::vector<std::string> fallback) {
    const char* value = std::getenv(var);
    if (value && *value) return {value};
    return fallback;
}

std::vector<std::string> program_from_env(const char* var, std::vector<std::string> argv) {
    const char* value = std::getenv(var);
    if (value && *value && !argv.empty()) argv[0] = value;
    return argv;
}

std::string join_command(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) {
        if (!out.empty()) out += ' ';
        out += a;
    }
    return out;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace nixboot
