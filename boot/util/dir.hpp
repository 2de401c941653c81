// Every file nixboot changes on the ESP (and in its state dir) goes through a
// RootDir: a directory opened once, all access relative to its fd, with
// relative paths validated and no symlink followed out of (or inside) it.
#pragma once

#include "boot/util/fd.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>

namespace nixboot {

// How durable a change must be when the call returns.
//   no:        neither file nor directory fsynced (tests, state that may be lost)
//   yes:       file data and the directory entry fsynced (the default for the ESP)
//   file_only: file data fsynced, the directory entry not: for batches of new
//              files in one directory; call fsync_dir() once afterwards, and
//              before anything that depends on the files (e.g. a default
//              pointing at them). A crash before then loses whole new files,
//              never leaves a partial one.
enum class Sync { no, yes, file_only };

// Process-wide counters of mutating I/O, for the benchmark.
struct IoStats {
    std::uint64_t writes = 0;   // files written (write_atomic, copy_in, append)
    std::uint64_t renames = 0;  // renames done (not counting idempotent no-ops)
    std::uint64_t fsyncs = 0;   // fsync/fdatasync calls on files and dirs
    std::uint64_t removes = 0;  // unlinks done
};
IoStats io_stats() noexcept;
void reset_io_stats() noexcept;

// Throws Error unless `rel` is a non-empty relative path of plain
// components (no absolute path, no "." or "..", no empty part, no NUL).
void validate_relative_path(std::string_view rel);

// Reads a whole regular file at an ordinary path (outside any RootDir: the
// Nix store, /proc), following symlinks. nullopt if it does not exist;
// throws Error if it is larger than max_bytes or not a regular file.
std::optional<std::string> read_file_if_exists(const std::filesystem::path& path, std::size_t max_bytes);

// Opens the regular file `path` (outside any RootDir, symlinks followed) for
// reading without ever blocking: O_NONBLOCK, so a FIFO cannot wait for a
// writer, then fstat. Throws Error "VERB 'PATH': not a regular file" (FIFO,
// device, directory), "VERB 'PATH': a symbolic link loop", or SysError.
Fd open_regular_file(const std::filesystem::path& path, std::string_view verb);

// One file being replaced atomically (from RootDir::begin_atomic): a temp
// file beside the target; commit() fsyncs it (per Sync), renames it over the
// target and fsyncs the directory (Sync::yes). Without commit() the
// destructor only removes the temp file: the target is untouched.
class AtomicFile {
public:
    AtomicFile(AtomicFile&& other) noexcept;
    AtomicFile& operator=(AtomicFile&&) = delete;
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile();

    // Appends to the temp file; throws SysError naming the target.
    void write(std::string_view data);
    // Makes the new content visible under the target name. Once only.
    void commit(Sync sync);
    // The temp file's descriptor, for callers that fill it themselves.
    int fd() const noexcept { return file_.get(); }

private:
    friend class RootDir;
    AtomicFile(Fd dir, Fd file, std::string name, std::string temp, std::filesystem::path shown)
        : dir_(std::move(dir)),
          file_(std::move(file)),
          name_(std::move(name)),
          temp_(std::move(temp)),
          shown_(std::move(shown)) {}

    Fd dir_;
    Fd file_;
    std::string name_;             // target name in dir_
    std::string temp_;             // temp name in dir_; empty once committed or moved from
    std::filesystem::path shown_;  // the target's full path, for messages
};

class RootDir {
public:
    // Opens `path` (which must exist and be a directory; symlinks in `path`
    // itself are followed — it is the trusted root). Throws SysError naming it.
    static RootDir open(const std::filesystem::path& path);
    // Creates `path` (and parents, mode 0755) if missing, then opens it.
    static RootDir open_or_create(const std::filesystem::path& path);

    const std::filesystem::path& path() const noexcept { return path_; }
    int fd() const noexcept { return fd_.get(); }
    // Absolute path of `rel` under the root, for messages.
    std::filesystem::path display(std::string_view rel) const;

    // The directory `rel` below the root as a root of its own (every
    // component opened with O_NOFOLLOW), so that many files in it are reached
    // with one openat each; nullopt if it does not exist. Messages name its
    // full path.
    std::optional<RootDir> subdir(std::string_view rel) const;

    // "REL/NAME" of each regular file (not a symlink) in directory `rel`, one
    // fstatat each through one directory fd; empty if `rel` does not exist.
    std::set<std::string> regular_files(std::string_view rel) const;

    // Content of a regular file; nullopt if it does not exist. Throws Error if
    // it is larger than max_bytes, is not a regular file, or is a symlink.
    std::optional<std::string> read(std::string_view rel, std::size_t max_bytes) const;
    // Sorted names in directory `rel` ("" or "." = the root), without . and ..;
    // empty if the directory does not exist.
    std::vector<std::string> list(std::string_view rel) const;
    // lstat(2) of `rel` (a symlink is not followed); nullopt if it does not exist.
    std::optional<struct stat> lstat(std::string_view rel) const;
    // True if `rel` exists (a symlink counts as existing; it is not followed).
    bool exists(std::string_view rel) const;
    // True if `rel` is a regular file (not a symlink).
    bool is_regular_file(std::string_view rel) const;

    // THE way to change a file: temp file in the same directory, write, fsync,
    // renameat over `rel`, fsync the directory. On any failure the old file is
    // untouched and the temp file removed. Sync::no skips both fsyncs (tests,
    // state that may be lost).
    void write_atomic(std::string_view rel, std::string_view data, Sync sync, unsigned mode = 0644);
    // Starts replacing `rel` (its directory must exist); see AtomicFile.
    AtomicFile begin_atomic(std::string_view rel, unsigned mode = 0644) const;
    // Atomically copies the outside regular file `src` to `rel` (same steps).
    void copy_in(const std::filesystem::path& src, std::string_view rel, Sync sync);
    // Rewrites the existing regular file `rel` in place when it is exactly
    // data.size() bytes: pwrite from offset 0, no truncation, fsync (unless
    // Sync::no). The file keeps its blocks, so on FAT neither the allocation
    // table nor a directory entry's cluster chain changes — a power cut can
    // tear the data, never the file system. Returns false, writing nothing,
    // when `rel` is missing or of another size (the caller then uses
    // write_atomic).
    bool overwrite_in_place(std::string_view rel, std::string_view data, Sync sync);
    // Appends `data` with O_APPEND (creating the file, mode 0644) and fsyncs it
    // with Sync::yes. For append-only logs, not for ESP files.
    void append(std::string_view rel, std::string_view data, Sync sync);

    // Renames `from` to `to` without replacing an existing `to`. Returns true
    // if it renamed, false if it was already done (`from` absent, `to`
    // present). Throws if both exist or neither does. Fsyncs the directory
    // of `to` (and of `from` if different) with Sync::yes.
    bool rename_idempotent(std::string_view from, std::string_view to, Sync sync);
    // Removes file `rel`; false if it did not exist. Fsyncs its dir with Sync::yes.
    bool remove(std::string_view rel, Sync sync);
    // Creates directory `rel` and its parents (mode 0755); existing ones are fine.
    void mkdirs(std::string_view rel);
    // fsync of directory `rel` ("" = the root).
    void fsync_dir(std::string_view rel) const;
    // Removes leftovers of write_atomic/copy_in interrupted by a crash
    // (".NAME.nixboot-tmp-PID-*") in directory `rel` (missing: none); returns
    // how many. Spares a temp file whose PID is a live process (other than
    // this one) unless it is over an hour old, and one identical to its
    // target (a torn rename's twin, which on FAT shares the target's
    // clusters: left to fsck.fat). Only call it under the Lock: another
    // command's temp file looks the same.
    std::size_t remove_stale_temp_files(std::string_view rel, Sync sync);
    // Opens an existing or new file below the root with O_NOFOLLOW on every
    // component; `flags` are open(2) flags (O_CLOEXEC added).
    Fd open_file(std::string_view rel, int flags, unsigned mode = 0644) const;

private:
    RootDir(std::filesystem::path path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
    // Opens the parent directory of `rel` (every component O_NOFOLLOW) and
    // returns it with the last component; the root itself for a bare name.
    std::pair<Fd, std::string> open_parent(std::string_view rel) const;

    std::filesystem::path path_;
    Fd fd_;
};

}  // namespace nixboot
