// Catch2 for the tests, either major: Debian 12 ships v2 (<catch2/catch.hpp>),
// newer Debian and nixpkgs' catch2_3 ship v3. CMake sets
// NIXBOOT_CATCH2_MAJOR from the package it found. The few names that
// differ between the majors are wrapped here; everything else is the same.
//
// A test that cannot run here (not root, a program missing) says
// NIXBOOT_SKIP(why): it returns from the test case, and tests/main.cpp
// exits with SKIP_RETURN_CODE so ctest reports it as skipped, never passed.
#pragma once

#if NIXBOOT_CATCH2_MAJOR >= 3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <string>

namespace nixboot::test {

#if NIXBOOT_CATCH2_MAJOR >= 3
inline auto contains(const std::string& s) { return Catch::Matchers::ContainsSubstring(s); }
#else
inline auto contains(const std::string& s) { return Catch::Matchers::Contains(s); }
#endif
inline auto starts_with(const std::string& s) { return Catch::Matchers::StartsWith(s); }

// The exit status that makes ctest count a test as skipped (the value
// Catch2 v3 itself uses when every test it ran was skipped).
inline constexpr int skip_return_code = 4;

// Records that the running test case is skipped and why: printed, appended
// to $NIXBOOT_TEST_SKIP_LOG ("name<TAB>why" lines) when that is set.
void skip(const std::string& why);

// The path of `name` found in PATH, or "" when it is not there. `name` must
// be listed in scripts/requirements: a test fails if it calls a program that
// scripts/install-deps would not install.
std::string find_program(const std::string& name);

}  // namespace nixboot::test

#define NIXBOOT_SKIP(why)           \
    do {                            \
        ::nixboot::test::skip(why); \
        return;                     \
    } while (0)

// Skips the test case unless the process is root.
#define NIXBOOT_SKIP_UNLESS_ROOT(what)                                            \
    do {                                                                          \
        if (::geteuid() != 0) NIXBOOT_SKIP(std::string("needs root: ") + (what)); \
    } while (0)

// Declares `var`, the path of program `name`; skips the test case when the
// program is not in PATH.
#define NIXBOOT_NEED_PROGRAM(var, name)                                           \
    [[maybe_unused]] const std::string var = ::nixboot::test::find_program(name); \
    if (var.empty()) NIXBOOT_SKIP(std::string("needs ") + (name) + ", not in PATH")
