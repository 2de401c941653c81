#include "boot/util/error.hpp"

#include <cerrno>
#include <cstring>

namespace nixboot {

namespace {
std::string errno_text(int errno_value) {
    // strerror is not thread-safe in theory; strerrordesc_np is glibc-only.
    // Use the GNU strerror_r through a buffer so nothing is shared.
    char buffer[256];
    const char* text = strerror_r(errno_value, buffer, sizeof buffer);
    return text;
}
}  // namespace

SysError::SysError(int errno_value, const std::string& context)
    : Error(context + ": " + errno_text(errno_value)), errno_value_(errno_value) {}

void throw_errno(const std::string& context) {
    const int saved = errno;
    throw SysError(saved, context);
}

void rethrow_with_context(const Error& e, const std::string& context) {
    const std::string message = context + ": " + e.what();
    if (auto* sys = dynamic_cast<const SysError*>(&e)) {
        throw SysError(SysError::Verbatim{}, sys->errno_value(), message);
    }
    if (dynamic_cast<const ParseError*>(&e)) throw ParseError(message);
    if (dynamic_cast<const UsageError*>(&e)) throw UsageError(message);
    throw Error(message);
}

}  // namespace nixboot
