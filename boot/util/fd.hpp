// A move-only owned file descriptor.
#pragma once

#include <utility>

namespace nixboot {

class Fd {
public:
    Fd() noexcept = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    // Destructor closes and ignores errors: only for failure paths.
    ~Fd();

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }
    // Gives up ownership without closing.
    int release() noexcept { return std::exchange(fd_, -1); }
    // Closes now; throws SysError naming `what` (a path) if close(2) fails.
    void close(const char* what = "file descriptor");

private:
    int fd_ = -1;
};

}  // namespace nixboot
