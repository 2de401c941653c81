#include "boot/util/process.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include "boot/util/fd.hpp"

#include <csignal>
#include <cstdlib>
#include <sstream>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

using namespace nixboot;
using namespace nixboot::test;

TEST_CASE("process: exit status, signals, PATH lookup, no shell", "[util][process]") {
    CHECK(run_command({"true"}) == 0);
    CHECK(run_command({"sh", "-c", "exit 7"}) == 7);
    CHECK(run_command({"sh", "-c", "kill -KILL $$"}) == 128 + 9);
    TempDir tmp;
    // An argument with shell syntax is one argument, not a command.
    CHECK(run_command({"touch", (tmp / "a;b").string()}) == 0);
    CHECK(std::filesystem::exists(tmp / "a;b"));
    CHECK_THROWS_WITH(run_command({"/nonexistent/program"}),
                      "running '/nonexistent/program': No such file or directory");
    CHECK_THROWS_WITH(run_command({}), "running an empty command");
}

TEST_CASE("process: stand-ins from the environment", "[util][process]") {
    ::unsetenv("NIXBOOT_TEST_PROGRAM");
    CHECK(program_from_env("NIXBOOT_TEST_PROGRAM", {"systemctl", "stop"}) ==
          std::vector<std::string>{"systemctl", "stop"});
    CHECK(command_from_env("NIXBOOT_TEST_PROGRAM", {"systemctl", "reboot"}) ==
          std::vector<std::string>{"systemctl", "reboot"});
    ::setenv("NIXBOOT_TEST_PROGRAM", "/tmp/fake", 1);
    CHECK(program_from_env("NIXBOOT_TEST_PROGRAM", {"systemctl", "stop"}) ==
          std::vector<std::string>{"/tmp/fake", "stop"});
    CHECK(command_from_env("NIXBOOT_TEST_PROGRAM", {"systemctl", "reboot"}) == std::vector<std::string>{"/tmp/fake"});
    ::unsetenv("NIXBOOT_TEST_PROGRAM");
    CHECK(join_command({"systemd-run", "--on-active=30", "x"}) == "systemd-run --on-active=30 x");
}

TEST_CASE("process: run_process captures stdout and stderr apart, stdin is /dev/null", "[util][process]") {
    const ProcessResult r = run_process({"sh", "-c", "echo out; echo err >&2; cat; exit 3"});
    CHECK(r.exit_status == 3);
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    CHECK(first_line("a\nb\n") == "a");
    CHECK(first_line("") == "");
    // More than the 1 MiB kept: the rest is read and dropped, the child is not blocked.
    const ProcessResult big = run_process({"sh", "-c", "head -c 3000000 /dev/zero"});
    CHECK(big.exit_status == 0);
    CHECK(big.out.size() == 1u << 20);
    CHECK_THROWS_WITH(run_process({"nixboot-no-such-program"}),
                      "running 'nixboot-no-such-program': No such file or directory");
}

TEST_CASE("process: spawn_process with extra environment, own process group, signals reset", "[util][process]") {
    ::setenv("NIXBOOT_TEST_INHERITED", "old", 1);
    // The caller's blocked SIGTERM and ignored SIGPIPE must not reach the child.
    sigset_t term, saved_mask;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    REQUIRE(::pthread_sigmask(SIG_BLOCK, &term, &saved_mask) == 0);
    struct sigaction ignore {
    }, saved_pipe{};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGPIPE, &ignore, &saved_pipe) == 0);
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    Fd read_end(fds[0]), write_end(fds[1]);
    SpawnOptions o;
    o.stdout_fd = write_end.get();
    o.own_process_group = true;
    o.search_path = false;
    o.extra_env = {"NIXBOOT_TEST_INHERITED=new", "NIXBOOT_TEST_ADDED=1"};
    const pid_t pid =
        spawn_process({"/bin/sh", "-c",
                       "echo $NIXBOOT_TEST_INHERITED $NIXBOOT_TEST_ADDED $(cut -d' ' -f5 /proc/$$/stat) $$ "
                       "$(sed -n 's/^SigBlk:\\t//p; s/^SigIgn:\\t//p' /proc/$$/status)"},
                      o);
    ::pthread_sigmask(SIG_SETMASK, &saved_mask, nullptr);
    ::sigaction(SIGPIPE, &saved_pipe, nullptr);
    write_end.close();
    std::string out;
    char buf[256];
    for (ssize_t n; (n = ::read(read_end.get(), buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    CHECK(wait_process(pid, "sh") == 0);
    ::unsetenv("NIXBOOT_TEST_INHERITED");
    std::istringstream words(out);
    std::string inherited, added, blocked, ignored;
    long pgid = 0, self = -1;
    words >> inherited >> added >> pgid >> self >> blocked >> ignored;
    INFO(out);
    CHECK(inherited == "new");
    CHECK(added == "1");
    CHECK(pgid == self);  // leads its own group
    REQUIRE(!ignored.empty());
    CHECK(std::stoull(blocked, nullptr, 16) == 0);
    CHECK((std::stoull(ignored, nullptr, 16) & (1ull << (SIGPIPE - 1))) == 0);
    // Without PATH lookup a bare name is not found.
    SpawnOptions exact;
    exact.search_path = false;
    CHECK_THROWS_WITH(spawn_process({"sh", "-c", "true"}, exact), "running 'sh': No such file or directory");
}
