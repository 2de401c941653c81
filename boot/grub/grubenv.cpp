#include "boot/grub/grubenv.hpp"

#include "boot/util/error.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

namespace nixboot::grub {

namespace {

std::string origin_prefix(std::string_view origin) { return std::string(origin) + ": "; }

// Appends `value` escaped as GRUB's envblk does: '\\' and '\n' get a backslash.
void append_escaped(std::string& out, std::string_view value) {
    for (char c : value) {
        if (c == '\\' || c == '\n') out += '\\';
        out += c;
    }
}

std::size_t escaped_size(std::string_view value) {
    std::size_t n = value.size();
    for (char c : value)
        if (c == '\\' || c == '\n') ++n;
    return n;
}

}  // namespace

bool valid_env_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    if (name.front() >= '0' && name.front() <= '9') return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
}

std::optional<std::string> GrubEnv::get(std::string_view name) const {
    for (auto it = lines_.rbegin(); it != lines_.rend(); ++it)
        if (it->kind == EnvLine::Kind::variable && it->name == name) return it->value;
    return std::nullopt;
}

void GrubEnv::set(std::string_view name, std::string_view value) {
    if (!valid_env_name(name)) throw UsageError("grubenv: '" + std::string(name) + "' is not a GRUB variable name");
    bool found = false;
    for (auto& line : lines_) {
        if (line.kind == EnvLine::Kind::variable && line.name == name) {
            line.value = std::string(value);
            found = true;
        }
    }
    if (!found) lines_.push_back({EnvLine::Kind::variable, std::string(name), std::string(value)});
}

bool GrubEnv::unset(std::string_view name) {
    auto removed = std::erase_if(
        lines_, [&](const EnvLine& line) { return line.kind == EnvLine::Kind::variable && line.name == name; });
    return removed > 0;
}

std::string grubenv_size_problem(std::size_t size, std::string_view origin) {
    return origin_prefix(origin) + "is " + std::to_string(size) + " bytes, not " + std::to_string(env_block_size) +
           (size < env_block_size ? " (truncated?)" : " (oversized)");
}

std::string grubenv_size_fix(std::string_view origin) {
    return "recreate it with 'grub-editenv " + std::string(origin) + " create', then run 'nixboot install'";
}

GrubEnv parse_grubenv(std::string_view block, std::string_view origin) {
    const std::string where = origin_prefix(origin);
    // GRUB 2.12 reads the whole file, whatever its size, and checks only the
    // header (grub-core/commands/loadenv.h read_envblk_file,
    // grub-core/lib/envblk.c grub_envblk_open); grub_envblk_iterate stops at
    // the first line it cannot finish. A block of another size is read the
    // same way: its last line, when cut short, is dropped.
    const bool sized = block.size() == env_block_size;
    if (block.size() <= env_header.size() && std::string_view(env_header).starts_with(block))
        throw ParseError(grubenv_size_problem(block.size(), origin));
    if (block.substr(0, env_header.size()) != env_header)
        throw ParseError(where + "does not start with the header '# GRUB Environment Block'");
    if (auto nul = block.find('\0'); nul != std::string_view::npos)
        throw ParseError(where + "holds a NUL byte at offset " + std::to_string(nul));

    std::vector<EnvLine> lines;
    std::size_t pos = env_header.size();
    unsigned line_no = 1;
    while (pos < block.size()) {
        ++line_no;
        const std::string_view rest = block.substr(pos);
        const auto newline = rest.find('\n');
        if (rest.front() == '#') {
            if (newline == std::string_view::npos) {
                // The padding: '#' to the very end, no newline.
                if (rest.find_first_not_of('#') != std::string_view::npos && sized)
                    throw ParseError(where + "line " + std::to_string(line_no) +
                                     ": unterminated line after the variables");
                break;
            }
            lines.push_back({EnvLine::Kind::comment, "", std::string(rest.substr(0, newline))});
            pos += newline + 1;
            continue;
        }
        const auto eq = rest.find('=');
        if (!sized && newline == std::string_view::npos) break;  // cut short: GRUB stops here too
        if (eq == std::string_view::npos || (newline != std::string_view::npos && newline < eq))
            throw ParseError(where + "line " + std::to_string(line_no) + ": no '=' in '" +
                             std::string(rest.substr(0, std::min<std::size_t>(newline, 40))) + "'");
        std::string name(rest.substr(0, eq));
        if (name.empty()) throw ParseError(where + "line " + std::to_string(line_no) + ": empty variable name");
        std::string value;
        std::size_t i = eq + 1;
        bool terminated = false;
        while (i < rest.size()) {
            const char c = rest[i];
            if (c == '\\') {
                if (i + 1 >= rest.size()) break;
                if (rest[i + 1] == '\n') ++line_no;
                value += rest[i + 1];
                i += 2;
            } else if (c == '\n') {
                terminated = true;
                ++i;
                break;
            } else {
                value += c;
                ++i;
            }
        }
        if (!terminated && !sized) break;
        if (!terminated)
            throw ParseError(where + "line " + std::to_string(line_no) + ": variable '" + name +
                             "' is not terminated by a newline");
        lines.push_back({EnvLine::Kind::variable, std::move(name), std::move(value)});
        pos += i;
    }
    return GrubEnv(std::move(lines));
}

std::string format_grubenv(const GrubEnv& env, std::string_view origin) {
    const std::string where = origin_prefix(origin);
    std::size_t needed = env_header.size();
    for (const auto& line : env.lines()) {
        if (line.kind == EnvLine::Kind::comment) {
            if (line.value.empty() || line.value.front() != '#' ||
                line.value.find_first_of(std::string_view("\n\0", 2)) != std::string::npos)
                throw Error(where + "comment line '" + line.value + "' cannot be written");
            needed += line.value.size() + 1;
        } else {
            // Names read from a block may be odd but must survive the round trip.
            if (line.name.empty() || line.name.front() == '#' ||
                line.name.find_first_of(std::string_view("=\n\0", 3)) != std::string::npos)
                throw Error(where + "'" + line.name + "' cannot be written as a variable name");
            if (line.value.find('\0') != std::string::npos)
                throw Error(where + "variable '" + line.name + "' holds a NUL byte");
            needed += line.name.size() + 1 + escaped_size(line.value) + 1;
        }
    }
    if (needed > env_block_size)
        throw Error(where + "variables need " + std::to_string(needed) + " bytes, more than the " +
                    std::to_string(env_block_size) + "-byte block holds");

    std::string out;
    out.reserve(env_block_size);
    out += env_header;
    for (const auto& line : env.lines()) {
        if (line.kind == EnvLine::Kind::comment) {
            out += line.value;
        } else {
            out += line.name;
            out += '=';
            append_escaped(out, line.value);
        }
        out += '\n';
    }
    out.append(env_block_size - out.size(), '#');
    return out;
}

std::optional<GrubEnv> read_grubenv(const RootDir& dir, std::string_view rel, std::string* size_warning) {
    auto text = dir.read(rel, max_env_file_size);
    if (!text) return std::nullopt;
    const std::string shown = dir.display(rel).string();
    GrubEnv env = parse_grubenv(*text, shown);
    if (size_warning && text->size() != env_block_size)
        *size_warning = grubenv_size_problem(text->size(), shown) +
                        "; read as GRUB reads it, but nixboot will not write it: " + grubenv_size_fix(shown);
    return env;
}

std::optional<GrubEnv> read_grubenv_to_write(const RootDir& dir, std::string_view rel) {
    std::string size_warning;
    auto env = read_grubenv(dir, rel, &size_warning);
    if (!size_warning.empty()) refuse_other_size(dir, rel);
    return env;
}

void refuse_other_size(const RootDir& dir, std::string_view rel) {
    const auto st = dir.lstat(rel);
    if (!st || !S_ISREG(st->st_mode) || st->st_size == static_cast<off_t>(env_block_size)) return;
    // GRUB's save_env and grub-editenv write the file's own blocks, its size
    // unchanged; nixboot writes only a 1024-byte block, and replacing the file
    // by another (rename over it) is what a power cut on FAT can tear.
    const std::string shown = dir.display(rel).string();
    throw Error(
        grubenv_size_problem(static_cast<std::size_t>(st->st_size), shown) +
        "; nixboot writes only a 1024-byte block in place and will not replace this one: " + grubenv_size_fix(shown));
}

void write_grubenv(RootDir& dir, std::string_view rel, const GrubEnv& env, Sync sync) {
    const std::string shown = dir.display(rel).string();
    refuse_other_size(dir, rel);
    const std::string block = format_grubenv(env, shown);
    // In place when the block exists (as GRUB's own save_env does): a power
    // cut cannot break a FAT cluster chain the next boot must read.
    if (!dir.overwrite_in_place(rel, block, sync)) dir.write_atomic(rel, block, sync);

    Fd fd = dir.open_file(rel, O_RDONLY);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("checking '" + shown + "'");
    fd.close(shown.c_str());
    if (st.st_size != static_cast<off_t>(env_block_size))
        throw Error(shown + ": is " + std::to_string(st.st_size) + " bytes after writing, not " +
                    std::to_string(env_block_size));
    if (static_cast<std::size_t>(st.st_blocks) * 512 < env_block_size)
        throw Error(shown + ": not fully allocated after writing (" + std::to_string(st.st_blocks) +
                    " blocks of 512 bytes: sparse or inline data), GRUB could not save_env to it");
}

}  // namespace nixboot::grub
