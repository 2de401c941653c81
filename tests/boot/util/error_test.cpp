#include "boot/util/error.hpp"

#include "tests/catch.hpp"

#include <cerrno>

using namespace nixboot;

TEST_CASE("SysError appends the errno text to its context", "[util][error]") {
    const SysError e(EROFS, "renaming 'a' to 'b'");
    CHECK(std::string(e.what()) == "renaming 'a' to 'b': Read-only file system");
    CHECK(e.errno_value() == EROFS);
}

TEST_CASE("throw_errno captures errno before formatting", "[util][error]") {
    errno = ENOSPC;
    try {
        throw_errno("writing 'x'");
        FAIL("no exception");
    } catch (const SysError& e) {
        CHECK(e.errno_value() == ENOSPC);
        CHECK(std::string(e.what()) == "writing 'x': No space left on device");
    }
}

TEST_CASE("rethrow_with_context keeps the error type", "[util][error]") {
    try {
        rethrow_with_context(SysError(ENOENT, "opening 'f'"), "installing generation 3");
    } catch (const SysError& e) {
        CHECK(std::string(e.what()) == "installing generation 3: opening 'f': No such file or directory");
        CHECK(e.errno_value() == ENOENT);
    }
    CHECK_THROWS_AS(rethrow_with_context(ParseError("x.conf:1: bad"), "c"), ParseError);
    CHECK_THROWS_AS(rethrow_with_context(UsageError("bad flag"), "c"), UsageError);
    CHECK_THROWS_WITH(rethrow_with_context(Error("inner"), "outer"), "outer: inner");
    // UsageError is an Error: main() maps it to 2 before the generic 1.
    CHECK_THROWS_AS(throw UsageError("u"), Error);
}
