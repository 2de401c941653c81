#include "boot/util/sha256.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include <sys/stat.h>

using namespace nixboot;

TEST_CASE("sha256: the FIPS 180-2 vectors, of a string and of a file") {
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex(std::string(1000, 'a')) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
    test::TempDir tmp;
    // More than one 64 KiB read: a million 'a's.
    test::write_file(tmp / "million", std::string(1000000, 'a'));
    CHECK(sha256_of_file(tmp / "million") == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    CHECK_THROWS_AS(sha256_of_file(tmp / "missing"), SysError);
    REQUIRE(::mkfifo((tmp / "fifo").c_str(), 0600) == 0);
    CHECK_THROWS_AS(sha256_of_file(tmp / "fifo"), Error);  // refused, never waited on
}
