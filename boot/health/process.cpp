#include "boot/health/process.hpp"

#include "boot/util/error.hpp"

#include <cerrno>
#include <cstdlib>
#include <spawn.h>
#include <sys/wait.h>

extern char** environ;

namespace nixboot::health {

int run_command(const std::vector<std::string>& argv) {
    if (argv.empty()) throw Error("running an empty command");
    std::vector<std::string> storage = argv;
    std::vector<char*> args;
    for (auto& a : storage) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = -1;
    int err = posix_spawnp(&pid, storage[0].c_str(), nullptr, nullptr, args.data(), environ);
    if (err != 0) throw SysError(err, "running '" + argv[0] + "'");
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw_errno("waiting for '" + argv[0] + "'");
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
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

}  // namespace nixboot::health
