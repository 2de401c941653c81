// The Watchdog wrapper against stand-ins: a plain file (the ioctl fails and
// says so, the writes land in order) and a missing device.
#include "boot/health/watchdog.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/health/health_support.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::health;
using namespace nixboot::test;

TEST_CASE("watchdog: arm, feed, hand over, disarm on a plain file", "[health][watchdog]") {
    TempDir tmp;
    auto dev = (tmp / "watchdog").string();
    write_file(dev, "");
    {
        Watchdog w = Watchdog::open(dev);
        CHECK(w.set_timeout(30) == "setting watchdog timeout on '" + dev + "': Inappropriate ioctl for device");
        w.feed();
        w.feed();
        w.hand_over();
    }
    CHECK(read_file(dev) == "..");  // handed over: no magic byte
    Watchdog again = Watchdog::open(dev);
    again.feed();
    again.disarm();
    CHECK(read_file(dev) == "...V");
}

TEST_CASE("watchdog: a missing device is an error naming it", "[health][watchdog][bad-input]") {
    TempDir tmp;
    auto dev = (tmp / "nope").string();
    CHECK_THROWS_WITH(Watchdog::open(dev), "opening watchdog '" + dev + "': No such file or directory");
    try {
        Watchdog::open(dev);
    } catch (const SysError& e) {
        CHECK(e.errno_value() == ENOENT);
    }
}
