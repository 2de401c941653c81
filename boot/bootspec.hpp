// NixOS bootspec (RFC 0125, "org.nixos.bootspec.v1") and the legacy toplevel
// files it replaced. All of it is untrusted input: types, required fields and
// sizes are checked, and errors name the origin and the field.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

struct BootSpec {
    std::string label;                  // "NixOS 24.05... (Linux 6.6.30)"
    std::string kernel;                 // absolute store path
    std::optional<std::string> initrd;  // absolute store path
    std::string init;                   // absolute store path
    std::string toplevel;
    std::string system;  // "x86_64-linux"
    std::vector<std::string> kernel_params;
    std::optional<std::string> initrd_secrets;  // "initrdSecrets" script
    std::optional<std::string> sort_key;        // "org.nixos.systemd-boot".sortKey
    std::optional<std::string> devicetree;      // "org.nixos.systemd-boot".devicetree
    bool operator==(const BootSpec&) const = default;
};

struct BootDocument {
    BootSpec boot;
    std::map<std::string, BootSpec> specialisations;  // by name
    bool operator==(const BootDocument&) const = default;
};

// Throws ParseError "ORIGIN: REASON" unless `name` is a safe specialisation
// name: 1..64 bytes of [A-Za-z0-9._-], not starting with '.' or '-'
// ('+' would corrupt boot counters, '/' paths, whitespace entry files).
void validate_specialisation_name(std::string_view name, std::string_view origin);

// Parses a boot.json text. Errors: "ORIGIN: not JSON: ...",
// "ORIGIN: missing \"org.nixos.bootspec.v1\"", "ORIGIN: field \"kernel\" of
// \"org.nixos.bootspec.v1\" is not a string", "ORIGIN: specialisation 'a b':
// ...". Max 1 MiB, strings max 4 KiB, at most 1024 kernel params of 16 KiB
// in all (so every entry fits nixboot's own read limits) and 256
// specialisations; paths must be absolute. Unknown extensions are ignored.
BootDocument parse_bootspec(std::string_view json_text, std::string_view origin);

// Formats a document as boot.json (for tests and demos);
// parse_bootspec(format_bootspec(d)) == d.
std::string format_bootspec(const BootDocument& doc);

// Reads TOPLEVEL/boot.json if it exists, otherwise the legacy files: kernel,
// initrd (optional), init, kernel-params, nixos-version, system, and the
// specialisation/NAME toplevels. Symlinks inside the toplevel are followed
// (it is the store). Throws Error/ParseError naming the toplevel and file.
BootDocument read_boot_document(const std::filesystem::path& toplevel);

}  // namespace nixboot
