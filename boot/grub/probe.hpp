// Can GRUB write its environment block here? GRUB's save_env rewrites the
// file's own sectors, so it only works on a plain filesystem (FAT, ext2/3/4)
// on a plain partition: never on btrfs or ZFS, and never through LVM, mdraid
// or an encrypted device (design.md G5). grub-probe tells both; tests (and
// machines where grub-probe cannot see the disk) inject its answers instead.
#pragma once

#include "boot/grub/grubcfg.hpp"

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::grub {

// What grub-probe says about the filesystem holding a directory.
struct FsInfo {
    std::string fs;                         // --target=fs: "ext2", "fat", "btrfs", ...
    std::vector<std::string> abstractions;  // --target=abstraction: "lvm", "cryptodisk", ...
    std::string fs_uuid;                    // --target=fs_uuid
    std::string error;                      // non-empty: grub-probe failed, this is why
    bool operator==(const FsInfo&) const = default;
};

// Parses an injected probe result: space-separated "fs=NAME",
// "abstraction=A[,B]", "uuid=UUID" words, e.g. "fs=btrfs abstraction=lvm".
// Throws UsageError "ORIGIN: ..." for anything else.
FsInfo parse_probe_override(std::string_view text, std::string_view origin);

class Prober {
public:
    virtual ~Prober() = default;
    virtual FsInfo probe(const std::filesystem::path& dir) const = 0;
};

// Runs the real `grub-probe --target=fs|abstraction|fs_uuid DIR`; a failure
// is returned in FsInfo::error (first line of its stderr), never thrown.
class GrubProbe final : public Prober {
public:
    FsInfo probe(const std::filesystem::path& dir) const override;
};

// Answers from a fixed table (directory -> result); unknown directories
// get an error result.
class FixedProbe final : public Prober {
public:
    explicit FixedProbe(std::map<std::filesystem::path, FsInfo> answers) : answers_(std::move(answers)) {}
    FsInfo probe(const std::filesystem::path& dir) const override;

private:
    std::map<std::filesystem::path, FsInfo> answers_;
};

enum class Writability { writable, not_writable, unknown };

struct WriteVerdict {
    Writability writability = Writability::unknown;
    std::string reason;  // one line, e.g. "btrfs: GRUB cannot write a file on btrfs"
};

// Pure: whether GRUB's save_env can write a file on a filesystem that
// grub-probe describes as `info`. Only FAT and ext2/3/4 without any
// abstraction count as writable; a failed probe is `unknown`.
WriteVerdict grub_can_write(const FsInfo& info);

// Where the env block lives and who consumes the tries.
struct EnvPlacement {
    enum class Where { boot, esp };
    Where where = Where::boot;  // boot: BOOT/grub/grubenv; esp: ESP/nixboot/grubenv
    EnvWriter writer = EnvWriter::grub;
    std::string esp_uuid;  // where == esp: the ESP's filesystem UUID
    // Why it is placed so; for stage1, the unprotected window in one line.
    std::string reason;
    bool operator==(const EnvPlacement&) const = default;
};

// Pure: the env block goes beside grub.cfg when GRUB can write there, else
// on the ESP when there is one GRUB can write (and its UUID is known), else
// beside grub.cfg with the tries consumed by nixboot-stage1.
EnvPlacement place_env(const FsInfo& boot, const std::optional<FsInfo>& esp);

}  // namespace nixboot::grub
