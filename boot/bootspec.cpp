#include "boot/bootspec.hpp"

#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"
#include "boot/util/utf16.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <sstream>
#include <sys/stat.h>

namespace nixboot {

namespace {

using nlohmann::json;

constexpr std::size_t max_json_bytes = 1024 * 1024;
constexpr std::size_t max_string_bytes = 4096;
constexpr std::size_t max_kernel_params = 1024;
// The kernel parameters of one system, joined by spaces. Linux keeps at most
// COMMAND_LINE_SIZE (2048 bytes on x86 and arm64) anyway; the bound keeps
// every entry nixboot writes well below the size it reads back (64 KiB per
// BLS entry, see boot/sdboot.cpp; GRUB's state and grub.cfg hold all).
constexpr std::size_t max_kernel_params_bytes = 16 * 1024;
constexpr std::size_t max_specialisations = 256;
constexpr const char* bootspec_key = "org.nixos.bootspec.v1";
constexpr const char* specialisation_key = "org.nixos.specialisation.v1";
constexpr const char* systemd_boot_key = "org.nixos.systemd-boot";

enum class Required { no, yes };
enum class PathKind { any, absolute };

// Checks a JSON string value (bounded, no control characters) and returns it.
std::string checked_string(const json& value, const std::string& where, PathKind kind) {
    if (!value.is_string()) throw ParseError(where + " is not a string");
    const auto& s = value.get_ref<const std::string&>();
    if (s.size() > max_string_bytes) throw ParseError(where + " is longer than 4096 bytes");
    if (std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
        throw ParseError(where + " contains a control character");
    if (kind == PathKind::absolute && (s.empty() || s.front() != '/'))
        throw ParseError(where + " is not an absolute path: '" + s + "'");
    return s;
}

std::optional<std::string> field(const json& object, const char* key, const std::string& where, Required required,
                                 PathKind kind) {
    const std::string field_where = where + ": field \"" + key + "\" of \"" + bootspec_key + "\"";
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) {
        if (required == Required::yes)
            throw ParseError(where + ": missing field \"" + key + "\" in \"" + bootspec_key + "\"");
        return std::nullopt;
    }
    return checked_string(*it, field_where, kind);
}

void check_params_size(const std::vector<std::string>& params, const std::string& where) {
    std::size_t bytes = 0;
    for (const auto& p : params) bytes += p.size() + 1;
    if (bytes > max_kernel_params_bytes)
        throw ParseError(where + ": kernel parameters of " + std::to_string(bytes) + " bytes, more than the " +
                         std::to_string(max_kernel_params_bytes) + " a boot entry may hold");
}

// Parses one document (a bootspec object plus its extensions) without
// looking at specialisations.
BootSpec parse_spec(const json& document, const std::string& where) {
    if (!document.is_object()) throw ParseError(where + ": not a JSON object");
    const auto v1 = document.find(bootspec_key);
    if (v1 == document.end()) throw ParseError(where + ": missing \"" + std::string(bootspec_key) + "\"");
    if (!v1->is_object()) throw ParseError(where + ": \"" + std::string(bootspec_key) + "\" is not an object");
    BootSpec spec;
    spec.label = *field(*v1, "label", where, Required::yes, PathKind::any);
    spec.kernel = *field(*v1, "kernel", where, Required::yes, PathKind::absolute);
    spec.initrd = field(*v1, "initrd", where, Required::no, PathKind::absolute);
    spec.init = *field(*v1, "init", where, Required::yes, PathKind::absolute);
    spec.toplevel = *field(*v1, "toplevel", where, Required::yes, PathKind::absolute);
    spec.system = *field(*v1, "system", where, Required::yes, PathKind::any);
    spec.initrd_secrets = field(*v1, "initrdSecrets", where, Required::no, PathKind::absolute);
    const auto params = v1->find("kernelParams");
    if (params == v1->end()) throw ParseError(where + ": missing field \"kernelParams\" in \"" + bootspec_key + "\"");
    if (!params->is_array())
        throw ParseError(where + ": field \"kernelParams\" of \"" + bootspec_key + "\" is not an array");
    if (params->size() > max_kernel_params) throw ParseError(where + ": more than 1024 kernel parameters");
    for (std::size_t i = 0; i < params->size(); ++i) {
        std::string param =
            checked_string((*params)[i], where + ": kernelParams[" + std::to_string(i) + "]", PathKind::any);
        if (param.empty()) throw ParseError(where + ": kernelParams[" + std::to_string(i) + "] is empty");
        spec.kernel_params.push_back(std::move(param));
    }
    check_params_size(spec.kernel_params, where);
    if (const auto ext = document.find(systemd_boot_key); ext != document.end() && !ext->is_null()) {
        const std::string ext_where = where + ": \"" + std::string(systemd_boot_key) + "\"";
        if (!ext->is_object()) throw ParseError(ext_where + " is not an object");
        if (const auto key = ext->find("sortKey"); key != ext->end() && !key->is_null()) {
            spec.sort_key = checked_string(*key, ext_where + " field \"sortKey\"", PathKind::any);
            const auto& s = *spec.sort_key;
            if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                           c == '_' || c == '-';
                }))
                throw ParseError(ext_where + " field \"sortKey\" must be [A-Za-z0-9._-]+: '" + s + "'");
        }
        if (const auto dt = ext->find("devicetree"); dt != ext->end() && !dt->is_null())
            spec.devicetree = checked_string(*dt, ext_where + " field \"devicetree\"", PathKind::absolute);
    }
    return spec;
}

json spec_to_json(const BootSpec& spec) {
    json v1 = {{"label", spec.label},       {"kernel", spec.kernel}, {"init", spec.init},
               {"toplevel", spec.toplevel}, {"system", spec.system}, {"kernelParams", spec.kernel_params}};
    if (spec.initrd) v1["initrd"] = *spec.initrd;
    if (spec.initrd_secrets) v1["initrdSecrets"] = *spec.initrd_secrets;
    json doc = {{bootspec_key, v1}};
    if (spec.sort_key || spec.devicetree) {
        json ext = json::object();
        if (spec.sort_key) ext["sortKey"] = *spec.sort_key;
        if (spec.devicetree) ext["devicetree"] = *spec.devicetree;
        doc[systemd_boot_key] = ext;
    }
    return doc;
}

std::optional<std::string> read_small_file(const std::filesystem::path& path, std::size_t max_bytes) {
    return read_file_if_exists(path, max_bytes);
}

std::string trim(std::string s) {
    const auto not_space = [](unsigned char c) { return !std::isspace(c); };
    s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
    s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
    return s;
}

// A legacy toplevel (no boot.json), as NixOS before bootspec laid it out.
BootSpec read_legacy(const std::filesystem::path& toplevel) {
    const std::string where = "'" + toplevel.string() + "'";
    BootSpec spec;
    std::error_code ec;
    const auto kernel = std::filesystem::canonical(toplevel / "kernel", ec);
    if (ec) throw Error(where + ": no boot.json and no usable 'kernel' (" + ec.message() + ")");
    spec.kernel = kernel.string();
    if (std::filesystem::exists(std::filesystem::symlink_status(toplevel / "initrd"))) {
        const auto initrd = std::filesystem::canonical(toplevel / "initrd", ec);
        if (ec) throw Error(where + ": 'initrd' is unusable (" + ec.message() + ")");
        spec.initrd = initrd.string();
    }
    if (!std::filesystem::exists(std::filesystem::symlink_status(toplevel / "init")))
        throw Error(where + ": no boot.json and no 'init'");
    spec.init = (toplevel / "init").string();
    spec.toplevel = toplevel.string();
    std::string version = trim(read_small_file(toplevel / "nixos-version", 4096).value_or(""));
    if (std::any_of(version.begin(), version.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
        version.clear();
    try {
        validate_utf8(version);  // the label ends up in entry titles
    } catch (const Error&) {
        version.clear();
    }
    spec.label = version.empty() ? "NixOS" : "NixOS " + version;
    spec.system = trim(read_small_file(toplevel / "system", 4096).value_or(""));
    std::istringstream params(read_small_file(toplevel / "kernel-params", 64 * 1024).value_or(""));
    for (std::string param; params >> param;) spec.kernel_params.push_back(param);
    if (spec.kernel_params.size() > max_kernel_params) throw Error(where + ": more than 1024 kernel parameters");
    check_params_size(spec.kernel_params, where);
    return spec;
}

}  // namespace

void validate_specialisation_name(std::string_view name, std::string_view origin) {
    const std::string where = std::string(origin) + ": specialisation '" + std::string(name) + "'";
    if (name.empty()) throw ParseError(std::string(origin) + ": specialisation with an empty name");
    if (name.size() > 64) throw ParseError(where + ": name longer than 64 bytes");
    if (name.front() == '.' || name.front() == '-')
        throw ParseError(where + ": name starts with '" + name.front() + "'");
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-';
        if (ok) continue;
        std::string what;
        if (c == '+')
            what = "'+' (it would corrupt boot counters)";
        else if (c == '/')
            what = "'/'";
        else if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            what = "whitespace";
        else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            what = "a control character";
        else
            what = "'" + std::string(1, c) + "'";
        throw ParseError(where + ": name contains " + what + "; allowed are [A-Za-z0-9._-]");
    }
}

BootDocument parse_bootspec(std::string_view json_text, std::string_view origin_view) {
    const std::string origin(origin_view);
    if (json_text.size() > max_json_bytes) throw ParseError(origin + ": larger than 1 MiB");
    json document;
    try {
        document = json::parse(json_text);
    } catch (const json::exception& e) {
        // parse_error, and out_of_range for a number that overflows a double ("1e400").
        // nlohmann's message starts with "[json.exception.parse_error.101] ": keep the useful part.
        std::string message = e.what();
        if (const auto bracket = message.find("] "); bracket != std::string::npos) message.erase(0, bracket + 2);
        throw ParseError(origin + ": not JSON: " + message);
    }
    BootDocument doc;
    doc.boot = parse_spec(document, origin);
    if (const auto specs = document.find(specialisation_key); specs != document.end() && !specs->is_null()) {
        if (!specs->is_object())
            throw ParseError(origin + ": \"" + std::string(specialisation_key) + "\" is not an object");
        if (specs->size() > max_specialisations) throw ParseError(origin + ": more than 256 specialisations");
        for (const auto& [name, sub] : specs->items()) {
            validate_specialisation_name(name, origin);
            doc.specialisations.emplace(name, parse_spec(sub, origin + ": specialisation '" + name + "'"));
        }
    }
    return doc;
}

std::string format_bootspec(const BootDocument& doc) {
    json out = spec_to_json(doc.boot);
    if (!doc.specialisations.empty()) {
        json specs = json::object();
        for (const auto& [name, spec] : doc.specialisations) specs[name] = spec_to_json(spec);
        out[specialisation_key] = specs;
    }
    return out.dump(2) + "\n";
}

BootDocument read_boot_document(const std::filesystem::path& toplevel) {
    const auto text = read_small_file(toplevel / "boot.json", max_json_bytes);
    if (text) return parse_bootspec(*text, (toplevel / "boot.json").string());
    BootDocument doc;
    doc.boot = read_legacy(toplevel);
    const std::filesystem::path specs = toplevel / "specialisation";
    std::error_code ec;
    if (std::filesystem::is_directory(specs, ec)) {
        std::vector<std::string> names;
        for (const auto& entry : std::filesystem::directory_iterator(specs, ec))
            names.push_back(entry.path().filename().string());
        if (ec) throw SysError(ec.value(), "listing '" + specs.string() + "'");
        if (names.size() > max_specialisations) throw Error("'" + specs.string() + "': more than 256 specialisations");
        std::sort(names.begin(), names.end());
        for (const std::string& name : names) {
            validate_specialisation_name(name, specs.string());
            std::error_code resolve_ec;
            const auto sub = std::filesystem::canonical(specs / name, resolve_ec);
            if (resolve_ec) throw Error("'" + (specs / name).string() + "': " + resolve_ec.message());
            doc.specialisations.emplace(name, read_legacy(sub));
        }
    }
    return doc;
}

}  // namespace nixboot
