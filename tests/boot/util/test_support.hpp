// Helpers for the core library's tests: a temporary root per test, small file
// helpers, and a size-limited tmpfs (a real ENOSPC) when running as root.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <thread>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace nixboot::test {

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "nixboot-core-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }

private:
    std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& content) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// A fake NixOS system generation for tests: STORE/system-N/{kernel,initrd,
// init,boot.json} plus PROFILE-N-link -> that toplevel. Specialisations get
// their own toplevel under the same store, listed in the parent's boot.json.
// Returns the toplevel.
inline std::filesystem::path make_generation(const std::filesystem::path& store, const std::filesystem::path& profile,
                                             unsigned n, const std::vector<std::string>& specialisations = {}) {
    const auto toplevel = store / ("system-" + std::to_string(n));
    auto spec_json = [&](const std::filesystem::path& top, const std::string& label) {
        write_file(top / "kernel-file", "kernel of " + top.string());
        write_file(top / "initrd-file", "initrd of " + top.string());
        write_file(top / "init", "#!/bin/sh\n");
        return "{\"org.nixos.bootspec.v1\": {\"label\": \"" + label + "\", \"kernel\": \"" +
               (top / "kernel-file").string() + "\", \"initrd\": \"" + (top / "initrd-file").string() +
               "\", \"init\": \"" + (top / "init").string() + "\", \"toplevel\": \"" + top.string() +
               "\", \"system\": \"x86_64-linux\", \"kernelParams\": [\"loglevel=4\", \"gen=" + std::to_string(n) +
               "\"]}, \"org.nixos.systemd-boot\": {\"sortKey\": \"nixos\"}";
    };
    std::string json = spec_json(toplevel, "NixOS 24.05 (Linux 6.6." + std::to_string(n) + ")");
    if (!specialisations.empty()) {
        json += ", \"org.nixos.specialisation.v1\": {";
        for (std::size_t i = 0; i < specialisations.size(); ++i) {
            const auto sub = store / ("system-" + std::to_string(n) + "-" + specialisations[i]);
            json +=
                (i ? ", \"" : "\"") + specialisations[i] + "\": " + spec_json(sub, "NixOS " + specialisations[i]) + "}";
        }
        json += "}";
    }
    json += "}";
    write_file(toplevel / "boot.json", json);
    write_file(toplevel / "nixos-version", "24.05." + std::to_string(n) + "\n");
    std::filesystem::create_directories(profile.parent_path());
    const auto link = profile.parent_path() / (profile.filename().string() + "-" + std::to_string(n) + "-link");
    std::filesystem::remove(link);
    std::filesystem::create_directory_symlink(toplevel, link);
    return toplevel;
}

// Runs `f` on its own thread and waits at most `limit` for it. If it is still
// running then (blocked opening one of `fifos` for reading), each FIFO is
// opened for writing and closed, which ends such a read with EOF, so the
// thread can be joined. Returns whether `f` finished in time; rethrows what
// `f` threw.
inline bool finishes_within(std::chrono::milliseconds limit, const std::vector<std::filesystem::path>& fifos,
                            const std::function<void()>& f) {
    std::packaged_task<void()> task(f);
    auto done = task.get_future();
    std::thread worker(std::move(task));
    const bool in_time = done.wait_for(limit) == std::future_status::ready;
    while (done.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
        for (const auto& fifo : fifos) {
            const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd >= 0) ::close(fd);
        }
    }
    worker.join();
    done.get();
    return in_time;
}

// Moves this process into a mount namespace of its own in which every mount
// is private: what a test mounts is never seen by the host and goes away with
// the process (ctest runs each test case in a process of its own). Root only.
inline void enter_private_mount_namespace() {
    if (::unshare(CLONE_NEWNS) != 0)
        throw std::runtime_error(std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno));
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        const int err = errno;
        throw std::runtime_error(
            std::string("making / private: ") + std::strerror(err) +
            (err == EINVAL ? " (/ is not a mount point: in a chroot, bind-mount its root onto itself first)" : ""));
    }
}

// A tmpfs of `size` mounted on `dir` for the lifetime of the object.
class TmpfsMount {
public:
    TmpfsMount(const std::filesystem::path& dir, const std::string& size) : dir_(dir) {
        std::filesystem::create_directories(dir_);
        const std::string options = "size=" + size + ",mode=0755";
        if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) != 0)
            throw std::runtime_error("mounting tmpfs on " + dir_.string() + ": " + std::strerror(errno));
    }
    ~TmpfsMount() { ::umount2(dir_.c_str(), MNT_DETACH); }
    TmpfsMount(const TmpfsMount&) = delete;
    TmpfsMount& operator=(const TmpfsMount&) = delete;
    void remount_read_only() {
        if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr) != 0)
            throw std::runtime_error("remounting " + dir_.string() + " read-only: " + std::strerror(errno));
    }

private:
    std::filesystem::path dir_;
};

}  // namespace nixboot::test
