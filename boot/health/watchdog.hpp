// The Linux watchdog device (/dev/watchdog, linux/watchdog.h). Stage 1 arms it
// and hands it over still running; the feeder (nixboot-stage1 feed) keeps it
// fed until the verdict or the verdict timeout; a good verdict disarms it
// with the magic close. A plain file or FIFO stands in for it in tests: the
// ioctls then fail (reported), the writes still happen and can be read back.
#pragma once

#include "boot/util/fd.hpp"

#include <optional>
#include <string>

namespace nixboot::health {

// What a feed writes; the magic close writes 'V' (any byte but 'V' feeds).
inline constexpr char watchdog_feed_byte = '.';
inline constexpr char watchdog_magic_byte = 'V';

class Watchdog {
public:
    // Opens `device` for writing (appending, so a plain file in a test keeps
    // every write; non-blocking, so a FIFO without a reader
    // fails instead of hanging). Throws SysError "opening watchdog 'DEV': ...".
    // Opening a real watchdog starts it.
    static Watchdog open(const std::string& device);

    // WDIOC_SETTIMEOUT. Returns the problem ("setting watchdog timeout on
    // 'DEV': Inappropriate ioctl for device") or nullopt on success.
    std::optional<std::string> set_timeout(unsigned seconds);
    // One keep-alive write. Throws SysError naming the device.
    void feed();
    // Closes WITHOUT the magic byte: the timer keeps running (hand-over).
    void hand_over();
    // Writes the magic 'V' and closes: the driver stops the timer.
    void disarm();

    const std::string& device() const noexcept { return device_; }

private:
    Watchdog(std::string device, Fd fd) : device_(std::move(device)), fd_(std::move(fd)) {}
    std::string device_;
    Fd fd_;
};

}  // namespace nixboot::health
