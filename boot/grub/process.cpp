#include "boot/grub/process.hpp"

#include "boot/util/error.hpp"
#include "boot/util/fd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

extern char** environ;

namespace nixboot::grub {

namespace {

constexpr std::size_t max_output = 1 << 20;

std::pair<Fd, Fd> make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("creating a pipe");
    return {Fd(fds[0]), Fd(fds[1])};
}

}  // namespace

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

ProcessResult run_process(const std::vector<std::string>& argv) {
    if (argv.empty()) throw Error("run_process: empty argv");
    auto [out_r, out_w] = make_pipe();
    auto [err_r, err_w] = make_pipe();
    // The exec status pipe: closed by exec (success) or carries errno.
    auto [st_r, st_w] = make_pipe();

    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);

    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("running '" + argv[0] + "'");
    if (pid == 0) {
        int devnull = ::open("/dev/null", O_RDONLY);
        if (devnull >= 0) ::dup2(devnull, 0);
        ::dup2(out_w.get(), 1);
        ::dup2(err_w.get(), 2);
        ::execvp(cargv[0], cargv.data());
        int e = errno;
        [[maybe_unused]] auto n = ::write(st_w.get(), &e, sizeof e);
        ::_exit(127);
    }
    out_w.close();
    err_w.close();
    st_w.close();

    int exec_errno = 0;
    ssize_t got;
    do got = ::read(st_r.get(), &exec_errno, sizeof exec_errno);
    while (got < 0 && errno == EINTR);

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
            ssize_t n = ::read(pfds[i].fd, buf.data(), buf.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                pfds[i].fd = -1;
                --open_count;
                continue;
            }
            if (sinks[i]->size() < max_output)
                sinks[i]->append(buf.data(), std::min<std::size_t>(n, max_output - sinks[i]->size()));
        }
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (got == static_cast<ssize_t>(sizeof exec_errno)) throw SysError(exec_errno, "running '" + argv[0] + "'");
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

}  // namespace nixboot::grub
