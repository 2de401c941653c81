#include "boot/generations.hpp"

#include "boot/util/crash_point.hpp"
#include "boot/util/error.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/fd.hpp"
#include "boot/util/utf16.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <climits>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

namespace nixboot {

namespace {

// "N" from "BASE-N-link"; nullopt for anything else (leading zeros). A
// number too large for `unsigned` reads as UINT_MAX: above max_generation,
// refused by the caller with the link's name instead of passed over.
std::optional<unsigned> parse_link_name(std::string_view name, std::string_view base) {
    if (!name.starts_with(base) || name.size() <= base.size() + 1 || name[base.size()] != '-') return std::nullopt;
    name.remove_prefix(base.size() + 1);
    if (!name.ends_with("-link")) return std::nullopt;
    name.remove_suffix(5);
    if (name.empty() || (name.size() > 1 && name.front() == '0')) return std::nullopt;
    unsigned n = 0;
    const auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
    if (ptr != name.data() + name.size()) return std::nullopt;
    if (ec == std::errc::result_out_of_range) return UINT_MAX;
    if (ec != std::errc()) return std::nullopt;
    return n;
}

// True if `path` has a ".." component (a store path never does).
bool has_dot_dot(const std::string& path) {
    for (const auto& part : std::filesystem::path(path))
        if (part == "..") return true;
    return false;
}

// canonical(2)-like resolution that remembers each directory it resolved: a
// path whose last component is not a symlink is its resolved parent plus that
// name, one lstat instead of a readlink per component (a profile's thousand
// generations all live in one store directory).
class Resolver {
public:
    // The path with every symlink resolved; sets `ec` (and returns an empty
    // path) as std::filesystem::canonical does when a component is missing.
    std::filesystem::path resolve(const std::filesystem::path& path, std::error_code& ec) {
        ec.clear();
        const auto parent = path.parent_path();
        if (parent.empty() || parent == path || !path.has_filename() || path.filename() == "." ||
            path.filename() == "..")
            return std::filesystem::canonical(path, ec);
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0) {
            ec.assign(errno, std::generic_category());
            return {};
        }
        if (S_ISLNK(st.st_mode)) return std::filesystem::canonical(path, ec);
        auto it = dirs_.find(parent);
        if (it == dirs_.end()) {
            auto real = resolve(parent, ec);
            if (ec) return {};
            it = dirs_.emplace(parent, std::move(real)).first;
        }
        return it->second / path.filename();
    }

private:
    std::map<std::filesystem::path, std::filesystem::path> dirs_;
};

// The files an entry copies to the boot partition must be regular files
// inside the store holding the toplevel: a bootspec naming /proc/self/environ
// or /etc/shadow must never get it copied to the ESP, which anyone may read.
// Kernels are shared by many generations: check each path once per scan.
class FileChecks {
public:
    void require(const std::string& path, const std::string& what, const std::filesystem::path& store) {
        const std::string key = store.string() + '\n' + path;
        auto it = seen_.find(key);
        if (it == seen_.end()) it = seen_.emplace(key, problem(path, store, resolver_)).first;
        if (!it->second.empty()) throw Error(what + " '" + path + it->second);
    }

    // Resolves paths the way the checks do (the toplevel's own store, too).
    Resolver& resolver() { return resolver_; }

    void require_boot_files(const BootSpec& spec, const std::string& prefix, const std::filesystem::path& store) {
        require(spec.kernel, prefix + "kernel", store);
        if (spec.initrd) require(*spec.initrd, prefix + "initrd", store);
        if (spec.devicetree) require(*spec.devicetree, prefix + "devicetree", store);
    }

private:
    // What follows the quoted path in the message; empty = fine.
    static std::string problem(const std::string& path, const std::filesystem::path& store, Resolver& resolver) {
        if (has_dot_dot(path)) return "' contains '..' (refused: boot files must be plain store paths)";
        std::error_code ec;
        const auto real = resolver.resolve(path, ec);
        if (ec) return "': " + ec.message();
        const std::string prefix = store.string() + "/";
        if (!real.string().starts_with(prefix))
            return "' is not inside the store '" + store.string() + "' holding the toplevel (" +
                   (real.string() == path ? std::string("refused")
                                          : "it resolves to '" + real.string() + "'; refused") +
                   ": only store files are copied to the boot partition)";
        struct stat st {};
        if (::stat(real.c_str(), &st) != 0) return "': " + std::error_code(errno, std::generic_category()).message();
        if (!S_ISREG(st.st_mode)) return "' is not a regular file";
        return {};
    }

    std::map<std::string, std::string> seen_;
    Resolver resolver_;
};

std::string read_version(const std::filesystem::path& toplevel) {
    std::string line;
    try {
        line = read_file_if_exists(toplevel / "nixos-version", 4096).value_or("");
    } catch (const Error&) {
        return "";
    }
    line = line.substr(0, line.find('\n'));
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.size() > 256 ||
        std::any_of(line.begin(), line.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
        return "";
    try {
        validate_utf8(line);  // it ends up in entry titles
    } catch (const Error&) {
        return "";
    }
    return line;
}

Generation read_generation_checked(const GenerationLink& link, FileChecks& checks) {
    Generation gen;
    gen.number = link.number;
    gen.link = link.link;
    gen.time = link.time;
    gen.toplevel = link.target;
    try {
        gen.doc = read_boot_document(gen.toplevel);
    } catch (const Error&) {
        // Say why in terms of the link when the system itself is gone; only
        // looked at on failure, to keep the common path to a few syscalls.
        struct stat st {};
        if (::stat(link.target.c_str(), &st) != 0) {
            const int err = errno;
            throw Error("'" + link.link.string() + "' does not lead to a system ('" + link.target.string() +
                        "': " + std::error_code(err, std::generic_category()).message() + ")");
        }
        throw;
    }
    // The store is the directory holding the (resolved) toplevel: /nix/store.
    std::error_code ec;
    const auto store = checks.resolver().resolve(gen.toplevel, ec).parent_path();
    if (ec)
        throw Error("'" + link.link.string() + "' does not lead to a system ('" + gen.toplevel.string() +
                    "': " + ec.message() + ")");
    checks.require_boot_files(gen.doc.boot, "", store);
    for (const auto& [name, spec] : gen.doc.specialisations)
        checks.require_boot_files(spec, "specialisation '" + name + "': ", store);
    gen.nixos_version = read_version(gen.toplevel);
    return gen;
}

}  // namespace

std::filesystem::path generation_link(const std::filesystem::path& profile, unsigned n) {
    return profile.parent_path() / (profile.filename().string() + "-" + std::to_string(n) + "-link");
}

std::vector<GenerationLink> list_generation_links(const std::filesystem::path& profile,
                                                  std::vector<std::filesystem::path>* out_of_range) {
    const std::filesystem::path dir = profile.parent_path().empty() ? "." : profile.parent_path();
    const std::string base = profile.filename().string();
    std::optional<RootDir> opened;
    try {
        opened = RootDir::open(dir);
    } catch (const SysError& e) {
        throw SysError(e.errno_value(), "listing generations in '" + dir.string() + "'");
    }
    const RootDir& root = *opened;
    std::vector<GenerationLink> links;
    for (const std::string& name : root.list("")) {
        const auto number = parse_link_name(name, base);
        if (!number) continue;
        if (*number > max_generation) {
            if (out_of_range) out_of_range->push_back(dir / name);
            continue;
        }
        GenerationLink link;
        link.number = *number;
        link.link = dir / name;
        struct stat st {};
        if (::fstatat(root.fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // raced away
        link.time = st.st_mtime;
        if (S_ISLNK(st.st_mode)) {
            std::string target(PATH_MAX, '\0');
            const ssize_t n = ::readlinkat(root.fd(), name.c_str(), target.data(), target.size());
            if (n < 0) continue;
            target.resize(static_cast<std::size_t>(n));
            link.target = std::filesystem::path(target).is_absolute() ? std::filesystem::path(target) : dir / target;
        } else {
            link.target = link.link;  // not a symlink: read it as the toplevel itself
        }
        link.target = link.target.lexically_normal();
        links.push_back(std::move(link));
    }
    std::sort(links.begin(), links.end(), [](const auto& a, const auto& b) { return a.number < b.number; });
    return links;
}

Generation read_generation(const GenerationLink& link) {
    FileChecks checks;
    return read_generation_checked(link, checks);
}

GenerationScan discover_generations(const std::filesystem::path& profile) {
    GenerationScan scan;
    FileChecks checks;
    std::vector<std::filesystem::path> too_large;
    const auto links = list_generation_links(profile, &too_large);
    for (const auto& link : too_large)
        scan.out_of_range.push_back("'" + link.string() + "': generation number above " +
                                    std::to_string(max_generation) +
                                    ", the largest an entry ID carries; not installed");
    for (const GenerationLink& link : links) {
        try {
            scan.ok.push_back(read_generation_checked(link, checks));
        } catch (const Error& e) {
            scan.skipped.push_back(SkippedGeneration{link.number, e.what()});
        } catch (const std::exception& e) {  // std::filesystem / bad_alloc: still only this generation
            scan.skipped.push_back(SkippedGeneration{link.number, "'" + link.link.string() + "': " + e.what()});
        }
    }
    return scan;
}

std::optional<unsigned> current_generation(const std::filesystem::path& profile) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(profile, ec);
    if (ec) return std::nullopt;
    const auto number = parse_link_name(target.filename().string(), profile.filename().string());
    if (number && *number > max_generation) return std::nullopt;
    return number;
}

void switch_profile(const std::filesystem::path& profile, unsigned n) {
    const std::filesystem::path link = generation_link(profile, n);
    struct stat st {};
    if (::lstat(link.c_str(), &st) != 0)
        throw SysError(errno, "switching '" + profile.string() + "' to generation " + std::to_string(n) + ": '" +
                                  link.string() + "'");
    const std::filesystem::path dir_path = profile.parent_path().empty() ? "." : profile.parent_path();
    Fd dir(::open(dir_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) throw_errno("opening '" + dir_path.string() + "'");
    const std::string target = link.filename().string();
    const std::string temp =
        profile.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(n);
    ::unlinkat(dir.get(), temp.c_str(), 0);  // a leftover of a crashed run
    const CrashMode crash = crash_point("profile", profile.native() + " -> " + target);
    if (::symlinkat(target.c_str(), dir.get(), temp.c_str()) != 0)
        throw_errno("switching '" + profile.string() + "': creating '" + (dir_path / temp).string() + "'");
    if (crash == CrashMode::torn) crash_now();  // the new link made, not yet renamed over the profile
    if (::renameat(dir.get(), temp.c_str(), dir.get(), profile.filename().c_str()) != 0) {
        const int err = errno;
        ::unlinkat(dir.get(), temp.c_str(), 0);
        throw SysError(err, "switching '" + profile.string() + "' to '" + target + "'");
    }
    if (::fsync(dir.get()) != 0) throw_errno("syncing '" + dir_path.string() + "'");
}

}  // namespace nixboot
