#include "boot/health/watchdog.hpp"

#include "boot/util/error.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace nixboot::health {

Watchdog Watchdog::open(const std::string& device) {
    int fd = ::open(device.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) throw_errno("opening watchdog '" + device + "'");
    return Watchdog(device, Fd(fd));
}

std::optional<std::string> Watchdog::set_timeout(unsigned seconds) {
    int value = static_cast<int>(seconds);
    if (ioctl(fd_.get(), WDIOC_SETTIMEOUT, &value) < 0) {
        int err = errno;
        return "setting watchdog timeout on '" + device_ + "': " + std::strerror(err);
    }
    return std::nullopt;
}

void Watchdog::feed() {
    if (::write(fd_.get(), &watchdog_feed_byte, 1) != 1) throw_errno("feeding watchdog '" + device_ + "'");
}

void Watchdog::hand_over() { fd_.close(device_.c_str()); }

void Watchdog::disarm() {
    if (::write(fd_.get(), &watchdog_magic_byte, 1) != 1) throw_errno("disarming watchdog '" + device_ + "'");
    fd_.close(device_.c_str());
}

}  // namespace nixboot::health
