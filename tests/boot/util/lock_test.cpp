#include "boot/util/lock.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include <chrono>
#include <sys/wait.h>
#include <unistd.h>

using namespace nixboot;

TEST_CASE("Lock: a second holder is refused with the lock's path", "[util][lock]") {
    test::TempDir tmp;
    const auto state = tmp / "state";  // created by acquire
    {
        Lock first = Lock::acquire(state);
        CHECK(first.path() == state / "lock");
        CHECK_THROWS_WITH(Lock::acquire(state),
                          "another nixboot command is running (lock '" + (state / "lock").string() + "' is held)");
        // Another process sees the lock too (flock is per open file, not per process).
        const pid_t child = ::fork();
        if (child == 0) {
            try {
                Lock::acquire(state);
                ::_exit(0);
            } catch (const Error&) {
                ::_exit(3);
            }
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 3);
    }
    // Released with the object.
    CHECK_NOTHROW(Lock::acquire(state));
}

TEST_CASE("Lock: an unusable state directory is an error naming it", "[util][lock]") {
    test::TempDir tmp;
    test::write_file(tmp / "file", "x");
    CHECK_THROWS_WITH(
        Lock::acquire(tmp / "file" / "state"),
        nixboot::test::starts_with("creating state directory '" + (tmp / "file" / "state").string() + "'"));
}

TEST_CASE("Lock: LockWait::yes waits for the holder to finish", "[util][lock]") {
    test::TempDir tmp;
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        Lock held = Lock::acquire(tmp.path());
        if (::write(ready[1], "x", 1) != 1) ::_exit(1);
        ::usleep(300 * 1000);
        ::_exit(0);  // the lock goes with the process
    }
    char byte = 0;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
    CHECK_THROWS_AS(Lock::acquire(tmp.path(), LockWait::no), Error);
    const auto start = std::chrono::steady_clock::now();
    Lock mine = Lock::acquire(tmp.path(), LockWait::yes);
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited > std::chrono::milliseconds(100));
    int status = 0;
    ::waitpid(child, &status, 0);
    ::close(ready[0]);
    ::close(ready[1]);
}

TEST_CASE("Lock: acquire_within waits for a holder, and past its bound says how long it waited", "[util][lock]") {
    test::TempDir tmp;
    int ready[2], release[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(release) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        Lock held = Lock::acquire(tmp.path());
        if (::write(ready[1], "x", 1) != 1) ::_exit(1);
        char b;
        if (::read(release[0], &b, 1) < 0) ::_exit(1);  // until the parent says so (or exits)
        ::_exit(0);
    }
    char byte = 0;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
    CHECK_THROWS_WITH(
        Lock::acquire_within(tmp.path(), std::chrono::seconds(1)),
        "another nixboot command is running (lock '" + (tmp / "lock").string() + "' is held; waited 1 s)");
    // Released while we wait: acquired (the bound is generous, never reached).
    REQUIRE(::write(release[1], "x", 1) == 1);
    CHECK_NOTHROW(Lock::acquire_within(tmp.path(), std::chrono::seconds(60)));
    int status = 0;
    ::waitpid(child, &status, 0);
    for (int fd : {ready[0], ready[1], release[0], release[1]}) ::close(fd);
}
