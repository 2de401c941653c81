// Error types shared by the whole tree. One handler in each main() maps them to
// exit codes: UsageError -> 2, every other Error -> 1.
#pragma once

#include <stdexcept>
#include <string>

namespace nixboot {

// An operation failed (exit 1). what() is one line a user can read.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// The command line or a config value was wrong; nothing was written (exit 2).
class UsageError : public Error {
public:
    using Error::Error;
};

// Text that does not parse. The message starts with its origin, e.g.
// "loader/entries/x.conf:3: line has no value for key 'linux'".
class ParseError : public Error {
public:
    using Error::Error;
};

// A system call failed. SysError(EROFS, "renaming 'a' to 'b'") has
// what() == "renaming 'a' to 'b': Read-only file system".
class SysError : public Error {
public:
    SysError(int errno_value, const std::string& context);
    // A message that already ends with the errno text (used when adding context).
    struct Verbatim {};
    SysError(Verbatim, int errno_value, const std::string& message) : Error(message), errno_value_(errno_value) {}
    int errno_value() const noexcept { return errno_value_; }

private:
    int errno_value_;
};

// Throws SysError for the current errno (read before anything else runs).
[[noreturn]] void throw_errno(const std::string& context);

// Returns "CONTEXT: MESSAGE" with the same dynamic type as `e` for the four
// types above, to add context while unwinding (Nix's addTrace, in one line).
[[noreturn]] void rethrow_with_context(const Error& e, const std::string& context);

}  // namespace nixboot
