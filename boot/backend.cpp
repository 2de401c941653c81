// The loader-neutral model (backend.hpp): names, entry IDs, and the choice
// of backend.
#include "boot/backend.hpp"

#include "boot/efivars.hpp"
#include "boot/grub/backend.hpp"
#include "boot/sdboot.hpp"
#include "boot/util/error.hpp"

#include <cctype>
#include <charconv>
#include <filesystem>
#include <system_error>

namespace nixboot {

std::string_view to_string(Bootloader b) { return b == Bootloader::grub ? "grub" : "systemd-boot"; }

std::optional<Bootloader> parse_bootloader(std::string_view text) {
    if (text == "systemd-boot") return Bootloader::systemd_boot;
    if (text == "grub") return Bootloader::grub;
    return std::nullopt;
}

std::string_view to_string(ArmMode m) {
    switch (m) {
        case ArmMode::one_shot: return "one-shot";
        case ArmMode::sort_order: return "sort-order";
        case ArmMode::preferred: return "preferred";
    }
    return "?";
}

std::string_view to_string(EntryState s) {
    switch (s) {
        case EntryState::good: return "good";
        case EntryState::trial: return "trial";
        case EntryState::bad: return "bad";
    }
    return "?";
}

std::string entry_id(unsigned generation, std::string_view specialisation) {
    std::string id = "nixos-generation-" + std::to_string(generation);
    if (!specialisation.empty()) id += "-specialisation-" + std::string(specialisation);
    return id;
}

std::optional<ParsedEntryId> parse_entry_id(std::string_view id) {
    constexpr std::string_view prefix = "nixos-generation-";
    if (!id.starts_with(prefix)) return std::nullopt;
    id.remove_prefix(prefix.size());
    std::size_t n = 0;
    while (n < id.size() && id[n] >= '0' && id[n] <= '9') ++n;
    if (n == 0 || n > 9 || (id[0] == '0' && n > 1)) return std::nullopt;
    ParsedEntryId out;
    std::from_chars(id.data(), id.data() + n, out.generation);
    id.remove_prefix(n);
    if (id.empty()) return out;
    constexpr std::string_view spec = "-specialisation-";
    if (!id.starts_with(spec) || id.size() == spec.size()) return std::nullopt;
    id.remove_prefix(spec.size());
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return std::nullopt;
    out.specialisation = std::string(id);
    return out;
}

const Entry* LoaderView::find(std::string_view id) const {
    for (const auto& e : entries)
        if (e.id == id) return &e;
    return nullptr;
}

std::unique_ptr<Backend> make_backend(std::optional<Bootloader> which, const BackendOptions& opts) {
    if (!which) {
        std::string info;
        try {
            info = EfiVars(opts.efivars).get_string(efivar_name::loader_info).value_or("");
        } catch (const Error&) {}
        std::error_code ec;
        if (info.starts_with("systemd-boot"))
            which = Bootloader::systemd_boot;
        else if (info.starts_with("GRUB") || info.starts_with("grub"))
            which = Bootloader::grub;
        else if (std::filesystem::exists(opts.esp / "loader" / "entries", ec) ||
                 std::filesystem::exists(opts.esp / "loader" / "loader.conf", ec))
            which = Bootloader::systemd_boot;
        else if (std::filesystem::exists(opts.esp / "grub" / "grub.cfg", ec))
            which = Bootloader::grub;
        else
            throw UsageError("cannot tell the bootloader: LoaderInfo is not set and " + opts.esp.string() +
                             " has neither loader/entries nor grub/grub.cfg; use --bootloader systemd-boot|grub");
    }
    if (*which == Bootloader::systemd_boot) return std::make_unique<SdBootBackend>(opts);
    return make_grub_backend(opts);
}

}  // namespace nixboot
