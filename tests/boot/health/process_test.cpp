#include "boot/health/process.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/health/health_support.hpp"

#include "tests/catch.hpp"

#include <cstdlib>

using namespace nixboot;
using namespace nixboot::health;
using namespace nixboot::test;

TEST_CASE("process: exit status, signals, PATH lookup, no shell", "[health][process]") {
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

TEST_CASE("process: stand-ins from the environment", "[health][process]") {
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
