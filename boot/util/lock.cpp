#include "boot/util/lock.hpp"

#include "boot/util/error.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/file.h>

#include <thread>

namespace nixboot {

Lock Lock::acquire(const std::filesystem::path& state_dir, LockWait wait, std::string_view name) {
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
    if (ec) throw SysError(ec.value(), "creating state directory '" + state_dir.string() + "'");
    std::filesystem::path path = state_dir / name;
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("opening lock '" + path.string() + "'");
    const int operation = LOCK_EX | (wait == LockWait::no ? LOCK_NB : 0);
    while (::flock(fd.get(), operation) != 0) {
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK)
            throw Error("another nixboot command is running (lock '" + path.string() + "' is held)");
        throw_errno("locking '" + path.string() + "'");
    }
    return Lock(std::move(path), std::move(fd));
}

Lock Lock::acquire_within(const std::filesystem::path& state_dir, std::chrono::milliseconds bound,
                          std::string_view name) {
    // flock(2) has no timeout: poll the non-blocking lock. 50 ms is short
    // beside a command holding it and cheap beside a boot.
    const auto deadline = std::chrono::steady_clock::now() + bound;
    for (;;) {
        try {
            return acquire(state_dir, LockWait::no, name);
        } catch (const SysError&) {
            throw;
        } catch (const Error&) {
            if (std::chrono::steady_clock::now() >= deadline)
                throw Error("another nixboot command is running (lock '" + (state_dir / name).string() +
                            "' is held; waited " +
                            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(bound).count()) + " s)");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

}  // namespace nixboot
