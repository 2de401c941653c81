#include "boot/generations.hpp"

#include "boot/util/error.hpp"
#include "boot/util/fd.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

namespace nixboot {

namespace {

// "N" from "BASE-N-link"; nullopt for anything else (leading zeros, overflow).
std::optional<unsigned> parse_link_name(std::string_view name, std::string_view base) {
    if (!name.starts_with(base) || name.size() <= base.size() + 1 || name[base.size()] != '-') return std::nullopt;
    name.remove_prefix(base.size() + 1);
    if (!name.ends_with("-link")) return std::nullopt;
    name.remove_suffix(5);
    if (name.empty() || (name.size() > 1 && name.front() == '0')) return std::nullopt;
    unsigned n = 0;
    const auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
    if (ec != std::errc() || ptr != name.data() + name.size()) return std::nullopt;
    return n;
}

void require_file(const std::string& path, const std::string& what) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw SysError(errno, what + " '" + path + "'");
    if (!S_ISREG(st.st_mode)) throw Error(what + " '" + path + "' is not a regular file");
}

// The files an entry copies to the ESP must exist before anything is written.
void require_boot_files(const BootSpec& spec, const std::string& prefix) {
    require_file(spec.kernel, prefix + "kernel");
    if (spec.initrd) require_file(*spec.initrd, prefix + "initrd");
    if (spec.devicetree) require_file(*spec.devicetree, prefix + "devicetree");
}

std::string read_version(const std::filesystem::path& toplevel) {
    std::ifstream in(toplevel / "nixos-version");
    std::string line;
    if (!in || !std::getline(in, line)) return "";
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.size() > 256 || std::any_of(line.begin(), line.end(), [](char c) {
            return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        }))
        return "";
    return line;
}

Generation read_generation(const std::filesystem::path& link, unsigned number) {
    Generation gen;
    gen.number = number;
    gen.link = link;
    struct stat st {};
    if (::lstat(link.c_str(), &st) != 0) throw_errno("'" + link.string() + "'");
    gen.time = st.st_mtime;
    std::error_code ec;
    gen.toplevel = std::filesystem::canonical(link, ec);
    if (ec) throw Error("'" + link.string() + "' does not lead to a system (" + ec.message() + ")");
    gen.doc = read_boot_document(gen.toplevel);
    require_boot_files(gen.doc.boot, "");
    for (const auto& [name, spec] : gen.doc.specialisations)
        require_boot_files(spec, "specialisation '" + name + "': ");
    gen.nixos_version = read_version(gen.toplevel);
    return gen;
}

} // namespace

std::filesystem::path generation_link(const std::filesystem::path& profile, unsigned n) {
    return profile.parent_path() / (profile.filename().string() + "-" + std::to_string(n) + "-link");
}

GenerationScan discover_generations(const std::filesystem::path& profile) {
    const std::filesystem::path dir = profile.parent_path().empty() ? "." : profile.parent_path();
    const std::string base = profile.filename().string();
    std::vector<std::pair<unsigned, std::filesystem::path>> links;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (auto n = parse_link_name(name, base)) links.emplace_back(*n, it->path());
    }
    if (ec) throw SysError(ec.value(), "listing generations in '" + dir.string() + "'");
    std::sort(links.begin(), links.end());
    GenerationScan scan;
    for (const auto& [number, link] : links) {
        try {
            scan.ok.push_back(read_generation(link, number));
        } catch (const Error& e) {
            scan.skipped.push_back(SkippedGeneration{number, e.what()});
        } catch (const std::exception& e) {  // std::filesystem / bad_alloc: still only this generation
            scan.skipped.push_back(SkippedGeneration{number, "'" + link.string() + "': " + e.what()});
        }
    }
    return scan;
}

std::optional<unsigned> current_generation(const std::filesystem::path& profile) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(profile, ec);
    if (ec) return std::nullopt;
    return parse_link_name(target.filename().string(), profile.filename().string());
}

void switch_profile(const std::filesystem::path& profile, unsigned n) {
    const std::filesystem::path link = generation_link(profile, n);
    struct stat st {};
    if (::lstat(link.c_str(), &st) != 0) throw SysError(errno, "switching '" + profile.string() + "' to generation " + std::to_string(n) + ": '" + link.string() + "'");
    const std::filesystem::path dir_path = profile.parent_path().empty() ? "." : profile.parent_path();
    Fd dir(::open(dir_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) throw_errno("opening '" + dir_path.string() + "'");
    const std::string target = link.filename().string();
    const std::string temp = profile.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(n);
    ::unlinkat(dir.get(), temp.c_str(), 0);  // a leftover of a crashed run
    if (::symlinkat(target.c_str(), dir.get(), temp.c_str()) != 0)
        throw_errno("switching '" + profile.string() + "': creating '" + (dir_path / temp).string() + "'");
    if (::renameat(dir.get(), temp.c_str(), dir.get(), profile.filename().c_str()) != 0) {
        const int err = errno;
        ::unlinkat(dir.get(), temp.c_str(), 0);
        throw SysError(err, "switching '" + profile.string() + "' to '" + target + "'");
    }
    if (::fsync(dir.get()) != 0) throw_errno("syncing '" + dir_path.string() + "'");
}

} // namespace nixboot
