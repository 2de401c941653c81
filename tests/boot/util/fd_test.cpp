#include "boot/util/fd.hpp"

#include "boot/util/error.hpp"

#include "tests/catch.hpp"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

using namespace nixboot;

namespace {
bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }
}  // namespace

TEST_CASE("Fd: owns, moves and closes exactly once", "[util][fd]") {
    int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(raw >= 0);
    {
        Fd a(raw);
        CHECK(a.valid());
        Fd b(std::move(a));
        CHECK_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
        CHECK(b.get() == raw);
        Fd c;
        c = std::move(b);
        CHECK(c.get() == raw);
        CHECK(is_open(raw));
    }
    CHECK_FALSE(is_open(raw));  // the destructor closed it

    raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    Fd d(raw);
    d.close("/dev/null");
    CHECK_FALSE(d.valid());
    CHECK_FALSE(is_open(raw));
    CHECK_NOTHROW(d.close("/dev/null"));  // closing an empty Fd is a no-op

    raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    Fd e(raw);
    const int released = e.release();
    CHECK_FALSE(e.valid());
    CHECK(is_open(released));
    ::close(released);
}

TEST_CASE("Fd: close reports the error with the file's name", "[util][fd]") {
    // A descriptor number that is not open: close(2) fails with EBADF.
    int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(raw >= 0);
    ::close(raw);
    Fd stale(raw);
    CHECK_THROWS_WITH(stale.close("loader/entries/a.conf"), "closing loader/entries/a.conf: Bad file descriptor");
    CHECK_FALSE(stale.valid());
}
