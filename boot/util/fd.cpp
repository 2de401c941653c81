#include "boot/util/fd.hpp"

#include "boot/util/error.hpp"

#include <cerrno>
#include <string>
#include <unistd.h>

namespace nixboot {

Fd& Fd::operator=(Fd&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

Fd::~Fd() {
    if (fd_ >= 0) ::close(fd_);
}

void Fd::close(const char* what) {
    if (fd_ < 0) return;
    const int fd = std::exchange(fd_, -1);
    // Linux always releases the descriptor, even when close reports an error
    // (EIO from a delayed write): never retry, but do report.
    if (::close(fd) != 0 && errno != EINTR) throw_errno(std::string("closing ") + what);
}

}  // namespace nixboot
