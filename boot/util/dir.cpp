#include "boot/util/dir.hpp"

#include "boot/util/crash_point.hpp"
#include "boot/util/error.hpp"

#include <atomic>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <vector>

namespace nixboot {

namespace {

std::atomic<std::uint64_t> g_writes{0};
std::atomic<std::uint64_t> g_renames{0};
std::atomic<std::uint64_t> g_fsyncs{0};
std::atomic<std::uint64_t> g_removes{0};
std::atomic<std::uint64_t> g_temp_counter{0};

std::string quoted(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

std::vector<std::string_view> split_components(std::string_view rel) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (start <= rel.size()) {
        const std::size_t slash = rel.find('/', start);
        const std::size_t end = slash == std::string_view::npos ? rel.size() : slash;
        parts.push_back(rel.substr(start, end - start));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    return parts;
}

// open(2) errors in a RootDir get a sentence for the symlink case. With
// O_NOFOLLOW a symlink fails with ELOOP, or ENOTDIR when O_DIRECTORY is set:
// look at the component itself to tell which.
[[noreturn]] void throw_open_error(int err, int dir_fd, const std::string& name, const std::string& verb,
                                   const std::filesystem::path& shown) {
    struct stat st {};
    if ((err == ELOOP || err == ENOTDIR) && ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
        throw Error(verb + " " + quoted(shown) + ": is a symbolic link (nixboot never follows symlinks below " +
                    "its root)");
    throw SysError(err, verb + " " + quoted(shown));
}

void do_fsync(int fd, const std::filesystem::path& shown) {
    if (::fsync(fd) != 0) throw_errno("syncing " + quoted(shown));
    ++g_fsyncs;
}

// A directory's fsync after a rename. On FAT (the ESP) that is not enough:
// the VM tests saw a power cut one second after a promotion leave
// loader.conf's old directory entry pointing at a cluster the FAT had
// already freed. Like systemd-bless-boot, sync the whole file system there.
void do_fsync_dir(int fd, const std::filesystem::path& shown) {
    do_fsync(fd, shown);
    crash_log_barrier("sync-dir", shown.native());
    struct statfs fs {};
    if (::fstatfs(fd, &fs) == 0 && fs.f_type == MSDOS_SUPER_MAGIC) {
        if (::syncfs(fd) != 0) throw_errno("syncing the file system of " + quoted(shown));
    }
}

// Writes all of `data`; retries short writes and EINTR.
void write_all(int fd, const char* data, std::size_t size, const std::filesystem::path& shown) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("writing " + quoted(shown));
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

std::string temp_name_for(std::string_view name) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ".nixboot-tmp-%d-%llx-%llx", static_cast<int>(::getpid()),
                  static_cast<unsigned long long>(g_temp_counter++),
                  static_cast<unsigned long long>(now) & 0xffffffull);
    return "." + std::string(name) + suffix;
}

}  // namespace

IoStats io_stats() noexcept { return IoStats{g_writes.load(), g_renames.load(), g_fsyncs.load(), g_removes.load()}; }

void reset_io_stats() noexcept {
    g_writes = 0;
    g_renames = 0;
    g_fsyncs = 0;
    g_removes = 0;
}

void validate_relative_path(std::string_view rel) {
    const std::string shown = "path '" + std::string(rel) + "'";
    if (rel.empty()) throw Error("empty path");
    if (rel.find('\0') != std::string_view::npos) throw Error(shown + " contains a NUL byte");
    if (rel.front() == '/') throw Error(shown + " is absolute (expected a path relative to the root)");
    for (std::string_view part : split_components(rel)) {
        if (part.empty()) throw Error(shown + " has an empty component");
        if (part == "..") throw Error(shown + " contains '..'");
        if (part == ".") throw Error(shown + " contains '.'");
    }
}

std::optional<std::string> read_file_if_exists(const std::filesystem::path& path, std::size_t max_bytes) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer forever (while the caller holds the state lock); it changes
    // nothing for the regular files accepted below.
    Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return std::nullopt;
        if (errno == ELOOP) throw Error("reading " + quoted(path) + ": a symbolic link loop");
        throw_errno("reading " + quoted(path));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("reading " + quoted(path));
    if (!S_ISREG(st.st_mode)) throw Error("reading " + quoted(path) + ": not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
        throw Error("reading " + quoted(path) + ": larger than " + std::to_string(max_bytes) + " bytes");
    std::string content(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    for (;;) {
        if (got == content.size()) content.resize(std::min(max_bytes + 1, content.size() * 2 + 4096));
        const ssize_t n = ::read(fd.get(), content.data() + got, content.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("reading " + quoted(path));
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
        if (got > max_bytes)
            throw Error("reading " + quoted(path) + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
    content.resize(got);
    fd.close(path.c_str());
    return content;
}

Fd open_regular_file(const std::filesystem::path& path, std::string_view verb) {
    const std::string context = std::string(verb) + " " + quoted(path);
    Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        if (errno == ELOOP) throw Error(context + ": a symbolic link loop");
        throw_errno(context);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno(context);
    if (!S_ISREG(st.st_mode)) throw Error(context + ": not a regular file");
    return fd;
}

RootDir RootDir::open(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw_errno("opening directory " + quoted(path));
    return RootDir(path, Fd(fd));
}

RootDir RootDir::open_or_create(const std::filesystem::path& path) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) throw SysError(ec.value(), "creating directory " + quoted(path));
    return open(path);
}

std::filesystem::path RootDir::display(std::string_view rel) const {
    if (rel.empty() || rel == ".") return path_;
    return path_ / std::filesystem::path(std::string(rel));
}

std::pair<Fd, std::string> RootDir::open_parent(std::string_view rel) const {
    validate_relative_path(rel);
    const auto parts = split_components(rel);
    Fd dir(::openat(fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) throw_errno("opening directory " + quoted(path_));
    std::filesystem::path shown = path_;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        shown /= std::string(parts[i]);
        const std::string part(parts[i]);
        const int next = ::openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            const int err = errno;
            throw_open_error(err, dir.get(), part, "opening directory", shown);
        }
        dir = Fd(next);
    }
    return {std::move(dir), std::string(parts.back())};
}

Fd RootDir::open_file(std::string_view rel, int flags, unsigned mode) const {
    auto [dir, name] = open_parent(rel);
    const int fd = ::openat(dir.get(), name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        const int err = errno;
        throw_open_error(err, dir.get(), name, "opening", display(rel));
    }
    return Fd(fd);
}

std::optional<RootDir> RootDir::subdir(std::string_view rel) const {
    try {
        return RootDir(display(rel), open_file(rel, O_RDONLY | O_DIRECTORY));
    } catch (const SysError& e) {
        if (e.errno_value() == ENOENT || e.errno_value() == ENOTDIR) return std::nullopt;
        throw;
    }
}

std::set<std::string> RootDir::regular_files(std::string_view rel) const {
    std::set<std::string> out;
    const auto dir = subdir(rel);
    if (!dir) return out;
    for (const auto& name : dir->list("")) {
        struct stat st {};
        if (::fstatat(dir->fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            out.insert(std::string(rel) + "/" + name);
    }
    return out;
}

std::optional<std::string> RootDir::read(std::string_view rel, std::size_t max_bytes) const {
    Fd fd;
    try {
        fd = open_file(rel, O_RDONLY | O_NONBLOCK);  // a FIFO must not block the open
    } catch (const SysError& e) {
        if (e.errno_value() == ENOENT || e.errno_value() == ENOTDIR) return std::nullopt;
        throw;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("reading " + quoted(display(rel)));
    if (!S_ISREG(st.st_mode)) throw Error("reading " + quoted(display(rel)) + ": not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
        throw Error("reading " + quoted(display(rel)) + ": larger than " + std::to_string(max_bytes) + " bytes");
    std::string content;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("reading " + quoted(display(rel)));
        }
        if (n == 0) break;
        content.append(buffer, static_cast<std::size_t>(n));
        if (content.size() > max_bytes)
            throw Error("reading " + quoted(display(rel)) + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
    fd.close(display(rel).c_str());
    return content;
}

std::vector<std::string> RootDir::list(std::string_view rel) const {
    Fd dir;
    if (rel.empty() || rel == ".") {
        dir = Fd(::openat(fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!dir) throw_errno("listing " + quoted(path_));
    } else {
        try {
            dir = open_file(rel, O_RDONLY | O_DIRECTORY);
        } catch (const SysError& e) {
            if (e.errno_value() == ENOENT) return {};
            throw;
        }
    }
    DIR* stream = ::fdopendir(dir.get());
    if (!stream) throw_errno("listing " + quoted(display(rel)));
    dir.release();  // owned by the DIR stream now
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* entry = ::readdir(stream)) {
        const std::string_view name = entry->d_name;
        if (name != "." && name != "..") names.emplace_back(name);
        errno = 0;
    }
    const int err = errno;
    ::closedir(stream);
    if (err != 0) throw SysError(err, "listing " + quoted(display(rel)));
    std::sort(names.begin(), names.end());
    return names;
}

std::optional<struct stat> RootDir::lstat(std::string_view rel) const {
    Fd dir;
    std::string name;
    try {
        std::tie(dir, name) = open_parent(rel);
    } catch (const SysError& e) {
        if (e.errno_value() == ENOENT || e.errno_value() == ENOTDIR) return std::nullopt;
        throw;
    }
    struct stat st {};
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return st;
    if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
    throw_errno("checking " + quoted(display(rel)));
}

bool RootDir::exists(std::string_view rel) const { return lstat(rel).has_value(); }

bool RootDir::is_regular_file(std::string_view rel) const {
    const auto st = lstat(rel);
    return st && S_ISREG(st->st_mode);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : dir_(std::move(other.dir_)),
      file_(std::move(other.file_)),
      name_(std::move(other.name_)),
      temp_(std::exchange(other.temp_, std::string())),
      shown_(std::move(other.shown_)) {}

AtomicFile::~AtomicFile() {
    if (!temp_.empty() && dir_) ::unlinkat(dir_.get(), temp_.c_str(), 0);
}

void AtomicFile::write(std::string_view data) {
    if (temp_.empty()) throw Error("writing " + quoted(shown_) + ": already committed");
    write_all(file_.get(), data.data(), data.size(), shown_);
}

void AtomicFile::commit(Sync sync) {
    if (temp_.empty()) throw Error("writing " + quoted(shown_) + ": already committed");
    if (sync != Sync::no) do_fsync(file_.get(), shown_);
    file_.close(shown_.c_str());
    // Until its directory's fsync an unsynced rename may be lost ("write-unsynced").
    const CrashMode crash = crash_point(sync == Sync::yes ? "write" : "write-unsynced", shown_.native());
    if (::renameat(dir_.get(), temp_.c_str(), dir_.get(), name_.c_str()) != 0)
        throw_errno("writing " + quoted(shown_) + " (renaming the temporary file into place)");
    if (crash == CrashMode::torn) {
        // A rename over a file cut short on FAT: the target's directory entry
        // already points at the new clusters, the temp name's still does too.
        ::linkat(dir_.get(), name_.c_str(), dir_.get(), temp_.c_str(), 0);
        crash_now();
    }
    temp_.clear();
    ++g_writes;
    ++g_renames;
    if (sync == Sync::yes) do_fsync_dir(dir_.get(), shown_.parent_path());
}

AtomicFile RootDir::begin_atomic(std::string_view rel, unsigned mode) const {
    auto [dir, name] = open_parent(rel);
    const std::filesystem::path shown = display(rel);
    std::string temp = temp_name_for(name);
    Fd file(::openat(dir.get(), temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!file) throw_errno("writing " + quoted(shown) + " (creating a temporary file)");
    AtomicFile atomic(std::move(dir), std::move(file), std::move(name), std::move(temp), shown);
    // Exact mode regardless of umask where the file system keeps modes. FAT
    // (the ESP) derives them from mount options and refuses chmod with EPERM
    // unless mounted "quiet": there the mount's mode is the right one.
    if (::fchmod(atomic.fd(), mode) != 0 && errno != EPERM && errno != EOPNOTSUPP)
        throw_errno("writing " + quoted(shown) + " (setting its mode)");
    return atomic;
}

void RootDir::write_atomic(std::string_view rel, std::string_view data, Sync sync, unsigned mode) {
    AtomicFile file = begin_atomic(rel, mode);
    file.write(data);
    file.commit(sync);
}

void RootDir::copy_in(const std::filesystem::path& src, std::string_view rel, Sync sync) {
    Fd in = open_regular_file(src, "copying");
    AtomicFile file = begin_atomic(rel, 0644);
    std::vector<char> buffer(1 << 20);
    for (;;) {
        const ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("copying " + quoted(src));
        }
        if (n == 0) break;
        file.write(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    }
    file.commit(sync);
}

bool RootDir::overwrite_in_place(std::string_view rel, std::string_view data, Sync sync) {
    auto [dir, name] = open_parent(rel);
    const std::filesystem::path shown = display(rel);
    Fd file(::openat(dir.get(), name.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!file) {
        const int err = errno;
        if (err == ENOENT) return false;
        throw_open_error(err, dir.get(), name, "opening", shown);
    }
    struct stat st {};
    if (::fstat(file.get(), &st) != 0) throw_errno("checking " + quoted(shown));
    if (!S_ISREG(st.st_mode)) throw Error(quoted(shown) + ": not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) != data.size()) return false;
    const bool torn = crash_point("overwrite", shown.native()) == CrashMode::torn;
    const std::size_t end = torn ? data.size() / 2 : data.size();  // torn: the first half reached the disk
    std::size_t done = 0;
    while (done < end) {
        const ssize_t n = ::pwrite(file.get(), data.data() + done, end - done, static_cast<off_t>(done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("writing " + quoted(shown));
        }
        done += static_cast<std::size_t>(n);
    }
    if (torn) crash_now();
    ++g_writes;
    if (sync != Sync::no) do_fsync(file.get(), shown);
    file.close(shown.c_str());
    return true;
}

void RootDir::append(std::string_view rel, std::string_view data, Sync sync) {
    auto [dir, name] = open_parent(rel);
    const std::filesystem::path shown = display(rel);
    struct stat st {};
    const bool existed = ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    Fd file(::openat(dir.get(), name.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!file) {
        const int err = errno;
        throw_open_error(err, dir.get(), name, "opening", shown);
    }
    if (crash_point("append", shown.native()) == CrashMode::torn) {
        write_all(file.get(), data.data(), data.size() / 2, shown);  // a torn last line
        crash_now();
    }
    write_all(file.get(), data.data(), data.size(), shown);
    ++g_writes;
    if (sync != Sync::no) do_fsync(file.get(), shown);
    file.close(shown.c_str());
    if (sync == Sync::yes && !existed) do_fsync_dir(dir.get(), shown.parent_path());
}

bool RootDir::rename_idempotent(std::string_view from, std::string_view to, Sync sync) {
    auto [from_dir, from_name] = open_parent(from);
    auto [to_dir, to_name] = open_parent(to);
    const std::string context = "renaming " + quoted(display(from)) + " to " + quoted(display(to));
    if (from == to) {
        if (exists(from)) return false;
        throw Error(context + ": it does not exist");
    }
    if (crash_point("rename", display(from).native() + " -> " + display(to).native()) == CrashMode::torn) {
        // A rename cut short on FAT: both names, one cluster chain.
        ::linkat(from_dir.get(), from_name.c_str(), to_dir.get(), to_name.c_str(), 0);
        crash_now();
    }
    int rc = ::renameat2(from_dir.get(), from_name.c_str(), to_dir.get(), to_name.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && errno == EINVAL) {
        // The file system lacks RENAME_NOREPLACE: check, then rename (racy only
        // against other writers, which the lock excludes).
        struct stat st {};
        if (::fstatat(to_dir.get(), to_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            errno = EEXIST;
        } else {
            rc = ::renameat(from_dir.get(), from_name.c_str(), to_dir.get(), to_name.c_str());
        }
    }
    if (rc != 0) {
        const int err = errno;
        struct stat st {};
        const bool to_exists = ::fstatat(to_dir.get(), to_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (err == ENOENT && to_exists) return false;  // already done
        if (err == EEXIST) throw Error(context + ": the target already exists");
        throw SysError(err, context);
    }
    ++g_renames;
    if (sync == Sync::yes) {
        do_fsync_dir(to_dir.get(), display(to).parent_path());
        if (display(to).parent_path() != display(from).parent_path())
            do_fsync_dir(from_dir.get(), display(from).parent_path());
    }
    return true;
}

bool RootDir::remove(std::string_view rel, Sync sync) {
    Fd dir;
    std::string name;
    try {
        std::tie(dir, name) = open_parent(rel);
    } catch (const SysError& e) {
        if (e.errno_value() == ENOENT) return false;
        throw;
    }
    struct stat st {};
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) crash_point("remove", display(rel).native());
    if (::unlinkat(dir.get(), name.c_str(), 0) != 0) {
        if (errno == ENOENT) return false;
        throw_errno("removing " + quoted(display(rel)));
    }
    ++g_removes;
    if (sync == Sync::yes) do_fsync_dir(dir.get(), display(rel).parent_path());
    return true;
}

void RootDir::mkdirs(std::string_view rel) {
    if (rel.empty() || rel == ".") return;
    validate_relative_path(rel);
    Fd dir(::openat(fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) throw_errno("opening directory " + quoted(path_));
    std::filesystem::path shown = path_;
    for (std::string_view part : split_components(rel)) {
        shown /= std::string(part);
        const std::string name(part);
        struct stat st {};
        if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) crash_point("mkdir", shown.native());
        if (::mkdirat(dir.get(), name.c_str(), 0755) != 0 && errno != EEXIST)
            throw_errno("creating directory " + quoted(shown));
        const int next = ::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            const int err = errno;
            throw_open_error(err, dir.get(), name, "opening directory", shown);
        }
        dir = Fd(next);
    }
}

namespace {

// A temp file (".NAME.nixboot-tmp-PID-...") may still be filled by a live
// writer that does not take the command lock (a live trial's record): spare
// it while process PID exists, unless it is older than any write takes (the
// PID may be another process's after a reboot).
bool temp_file_is_stale(int dir_fd, const std::string& name) {
    constexpr std::string_view marker = ".nixboot-tmp-";
    const auto at = name.find(marker);
    if (!name.starts_with('.') || at == std::string::npos) return false;
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return false;
    if (st.st_mtime + 3600 < std::time(nullptr)) return true;
    const long pid = std::strtol(name.c_str() + at + marker.size(), nullptr, 10);
    return pid <= 0 || pid == ::getpid() || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH);
}

// Whether temp file `temp` holds exactly what its target (".NAME.nixboot-
// tmp-..." -> "NAME") holds: the twin a torn rename leaves. On FAT the
// rename's new directory entry was written and the old one not yet removed,
// so both names point at the same clusters (st_nlink says 1 there; an
// identical copy cannot be told apart), and unlinking the temp name would
// free the target's clusters. Such a twin is left to fsck.fat, as the two
// names of a torn entry rename are. Files are compared in 64 KiB blocks.
bool is_twin_of_target(int dir_fd, const std::string& temp) {
    const auto end = temp.find(".nixboot-tmp-");
    const std::string target = temp.substr(1, end - 1);
    struct stat ts {
    }, gs{};
    if (target.empty() || ::fstatat(dir_fd, temp.c_str(), &ts, AT_SYMLINK_NOFOLLOW) != 0 ||
        ::fstatat(dir_fd, target.c_str(), &gs, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(gs.st_mode) ||
        ts.st_size != gs.st_size)
        return false;
    if (ts.st_dev == gs.st_dev && ts.st_ino == gs.st_ino) return true;
    Fd a(::openat(dir_fd, temp.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    Fd b(::openat(dir_fd, target.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!a || !b) return false;
    std::vector<char> x(64 * 1024), y(64 * 1024);
    for (;;) {
        const ssize_t n = ::read(a.get(), x.data(), x.size());
        const ssize_t m = n > 0 ? ::read(b.get(), y.data(), static_cast<std::size_t>(n)) : 0;
        if (n < 0 || m < 0) return false;
        if (n == 0) return true;
        if (m != n || std::memcmp(x.data(), y.data(), static_cast<std::size_t>(n)) != 0) return false;
    }
}

}  // namespace

std::size_t RootDir::remove_stale_temp_files(std::string_view rel, Sync sync) {
    std::size_t removed = 0;
    Fd dir;
    try {
        dir = (rel.empty() || rel == ".") ? Fd(::openat(fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC))
                                          : open_file(rel, O_RDONLY | O_DIRECTORY);
    } catch (const SysError& e) {
        if (e.errno_value() == ENOENT) return 0;
        throw;
    }
    if (!dir) throw_errno("listing " + quoted(display(rel)));
    for (const std::string& name : list(rel)) {
        if (!temp_file_is_stale(dir.get(), name)) continue;
        if (is_twin_of_target(dir.get(), name)) continue;
        const std::string path = (rel.empty() || rel == ".") ? name : std::string(rel) + "/" + name;
        if (remove(path, Sync::no)) ++removed;
    }
    if (removed > 0 && sync == Sync::yes) fsync_dir(rel);
    return removed;
}

void RootDir::fsync_dir(std::string_view rel) const {
    Fd dir;
    if (rel.empty() || rel == ".") {
        dir = Fd(::openat(fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!dir) throw_errno("opening directory " + quoted(path_));
    } else {
        dir = open_file(rel, O_RDONLY | O_DIRECTORY);
    }
    do_fsync_dir(dir.get(), display(rel));
}

}  // namespace nixboot
