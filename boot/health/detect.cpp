#include "boot/health/detect.hpp"

#include "boot/util/error.hpp"

namespace nixboot::health {

namespace {

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

std::string printable(std::string_view value) {
    std::string out;
    for (std::size_t i = 0; i < value.size() && i < 128; ++i) {
        unsigned char c = static_cast<unsigned char>(value[i]);
        out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
    }
    if (value.size() > 128) out += "...";
    return out;
}

}  // namespace

BootCountPath parse_boot_count_path(std::string_view value) {
    auto fail = [&](std::string_view why) -> BootCountPath {
        throw ParseError("LoaderBootCountPath '" + printable(value) + "': " + std::string(why));
    };
    if (value.empty()) return fail("empty");
    if (value.size() > 512) return fail("longer than 512 bytes");
    if (value.front() != '\\') return fail("not an absolute path");
    if (value.find('/') != std::string_view::npos) return fail("contains '/'");
    std::vector<std::string_view> parts;
    std::string_view rest = value.substr(1);
    while (true) {
        auto sep = rest.find('\\');
        std::string_view part = rest.substr(0, sep);
        if (part.empty()) return fail("not normalized (empty path component)");
        if (part == "." || part == "..") return fail("not normalized ('" + std::string(part) + "' component)");
        for (char c : part)
            if (static_cast<unsigned char>(c) < 0x20) return fail("control character in path");
        parts.push_back(part);
        if (sep == std::string_view::npos) break;
        rest = rest.substr(sep + 1);
    }
    if (parts.size() != 3 || !iequals(parts[0], "loader") || !iequals(parts[1], "entries"))
        return fail("not a file directly under \\loader\\entries\\");
    auto name = try_parse_entry_name(parts[2]);
    if (!name || name->suffix != ".conf") return fail("not a boot entry file name (NAME[+LEFT[-DONE]].conf)");
    if (!name->counter) return fail("names no counted file (no +LEFT in the name)");
    return BootCountPath{"loader/entries/" + std::string(parts[2]), *name};
}

Detection detect_boot(const KernelCmdline& cmdline, const LoaderVars& vars) {
    Detection d;
    BootRecord& r = d.record;
    bool systemd_boot = vars.loader_info && vars.loader_info->rfind("systemd-boot", 0) == 0;
    if (vars.boot_count_path) {
        try {
            BootCountPath path = parse_boot_count_path(*vars.boot_count_path);
            r.bootloader = Bootloader::systemd_boot;
            r.entry = path.name.stem;
            r.file = path.file;
            r.trial = TrialBoot::yes;
            r.tries_left = path.name.counter->left;
            r.consumed_by = ConsumedBy::bootloader;
            if (!valid_entry_id(r.entry)) {
                d.problems.push_back("LoaderBootCountPath names entry '" + printable(r.entry) +
                                     "', which is not a valid entry ID; not treated as a trial");
                r = BootRecord{};
                r.bootloader = Bootloader::systemd_boot;
            } else if (cmdline.entry && *cmdline.entry != r.entry) {
                d.problems.push_back("nixboot.entry=" + *cmdline.entry + " disagrees with LoaderBootCountPath entry " +
                                     r.entry + "; trusting the loader");
            }
            return d;
        } catch (const Error& e) {
            d.problems.push_back(std::string(e.what()) + "; not treated as a trial");
        }
    }
    if (systemd_boot || vars.boot_count_path) {
        r.bootloader = Bootloader::systemd_boot;
        if (cmdline.entry) r.entry = *cmdline.entry;
        return d;
    }
    if (!cmdline.entry) return d;  // neither loader identified itself: unknown, no trial
    r.bootloader = Bootloader::grub;
    r.entry = *cmdline.entry;
    if (cmdline.grub_trial && *cmdline.grub_trial == r.entry) {
        r.trial = TrialBoot::yes;
        r.tries_left = cmdline.grub_tries_left.value_or(0);
        r.consumed_by = cmdline.consume == ConsumeBy::stage1 ? ConsumedBy::none : ConsumedBy::bootloader;
    }
    return d;
}

}  // namespace nixboot::health
