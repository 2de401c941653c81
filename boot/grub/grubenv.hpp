// GRUB's environment block (grubenv), byte-compatible with grub-editenv and
// with GRUB's own load_env/save_env: exactly 1024 bytes, the header line,
// "name=value\n" lines with '\\' and '\n' escaped by a backslash, comment
// lines kept as they are, '#' padding to the end.
//
// The block is untrusted input (GRUB and other tools write it too): parsing
// refuses, with the reason, anything that is not exactly such a block, and
// nixboot never rewrites a block it could not parse.
#pragma once

#include "boot/util/dir.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot::grub {

inline constexpr std::size_t env_block_size = 1024;
inline constexpr std::string_view env_header = "# GRUB Environment Block\n";

// One line of the block after the header, in file order.
struct EnvLine {
    enum class Kind { variable, comment };
    Kind kind = Kind::variable;
    std::string name;   // variable: the name; comment: empty
    std::string value;  // variable: the unescaped value; comment: the line without '\n'
    bool operator==(const EnvLine&) const = default;
};

// The variables (and comment lines) of a block. Variables nixboot does not
// know keep their place and value across get/set/format.
class GrubEnv {
public:
    GrubEnv() = default;
    explicit GrubEnv(std::vector<EnvLine> lines) : lines_(std::move(lines)) {}

    // The value GRUB's load_env would see: the last line of that name.
    std::optional<std::string> get(std::string_view name) const;
    // Replaces the value of `name` in place (every line of that name, so
    // nothing stale is left behind), or appends it. Throws UsageError for a
    // name that is not a GRUB variable name (see valid_env_name).
    void set(std::string_view name, std::string_view value);
    // Removes every line of `name`; false if there was none.
    bool unset(std::string_view name);

    const std::vector<EnvLine>& lines() const noexcept { return lines_; }
    bool operator==(const GrubEnv&) const = default;

private:
    std::vector<EnvLine> lines_;
};

// A name GRUB script can use as a variable: 1..64 of [A-Za-z0-9_], not
// starting with a digit.
bool valid_env_name(std::string_view name);

// The most nixboot reads of a grubenv file (GRUB reads any size).
inline constexpr std::size_t max_env_file_size = 1 << 20;

// "ORIGIN: is N bytes, not 1024 (truncated?)" ("(oversized)" above 1024).
std::string grubenv_size_problem(std::size_t size, std::string_view origin);

// Parses a block as GRUB 2.12 reads it. `origin` (a path) starts every error
// message, e.g. "/boot/grub/grubenv: line 3: no '=' in 'x'". Refused: a
// missing header, a NUL byte, a line without '=', and in a 1024-byte block an
// unterminated last line or anything but '#' after the last line. A block of
// another size with the header is read as GRUB reads it (GRUB checks only the
// header): an unterminated last line is dropped, as GRUB stops there.
GrubEnv parse_grubenv(std::string_view block, std::string_view origin);

// Formats exactly 1024 bytes (header, lines, '#' padding) that
// grub-editenv and GRUB read back as `env`. Throws Error
// "ORIGIN: variables need N bytes, more than the 1024-byte block holds" when
// they do not fit, and Error for a comment line that holds a newline or a
// variable name that cannot be written back.
std::string format_grubenv(const GrubEnv& env, std::string_view origin = "grubenv");

// Reads and parses `rel` under `dir`; nullopt if the file does not exist.
// Errors name the full path (RootDir::display). A file of another size than
// 1024 bytes is read as GRUB reads it, and `size_warning` (if given) gets one
// line naming the file, its size and the fix.
std::optional<GrubEnv> read_grubenv(const RootDir& dir, std::string_view rel, std::string* size_warning = nullptr);
// read_grubenv ahead of a write: refuses (refuse_other_size) a file that is
// not 1024 bytes before anything changes.
std::optional<GrubEnv> read_grubenv_to_write(const RootDir& dir, std::string_view rel);
// Throws Error "FILE: is N bytes, not 1024 (truncated?); nixboot writes only
// a 1024-byte block in place and will not replace this one: recreate it with
// 'grub-editenv FILE create', then run 'nixboot install'" when `rel` is a
// regular file of another size; a missing file is fine.
void refuse_other_size(const RootDir& dir, std::string_view rel);

// Writes `env` to `rel` under `dir` (refuse_other_size first): in place when a 1024-byte block is
// already there (RootDir::overwrite_in_place, as GRUB's save_env does: no FAT
// allocation changes, so a power cut cannot corrupt the file system), else
// through RootDir::write_atomic. Then checks that the new file is 1024 bytes and fully allocated
// (st_blocks covers it: not sparse, not inline data), which GRUB's save_env
// needs to write it in place. Throws Error naming the file otherwise.
void write_grubenv(RootDir& dir, std::string_view rel, const GrubEnv& env, Sync sync);

}  // namespace nixboot::grub
