#include "boot/grub/grubcfg.hpp"

#include "boot/grub/linux_args.hpp"
#include "boot/util/error.hpp"

#include <algorithm>
#include <array>

namespace nixboot::grub {

namespace {

bool is_id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

void check_id(std::string_view id, std::string_view what) {
    if (id.empty() || !std::all_of(id.begin(), id.end(), is_id_char) || id.front() == '-' || id.front() == '.')
        throw Error("grub.cfg: " + std::string(what) + " '" + std::string(id) +
                    "' is not an entry ID of [A-Za-z0-9._-]");
}

bool has_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

void check_no_control(std::string_view value, std::string_view what, std::string_view id) {
    if (has_control(value))
        throw Error("grub.cfg: entry '" + std::string(id) + "': " + std::string(what) + " holds a control character");
}

// The decrement table: GRUB script has no arithmetic, so "tries - 1" is one
// literal comparison per possible value. Sets nixboot_next to tries - 1 when
// tries is 1..max_tries, leaves it empty for 0 or anything else.
void append_decrement(std::string& out, std::string_view indent) {
    for (unsigned n = max_tries; n >= 1; --n) {
        out += indent;
        out += (n == max_tries) ? "if" : "elif";
        out += " [ \"${nixboot_tries}\" = \"" + std::to_string(n) + "\" ]; then set nixboot_next=\"" +
               std::to_string(n - 1) + "\"\n";
    }
    out += indent;
    out += "fi\n";
}

void append_entry(std::string& out, const MenuEntry& e, std::string_view title, std::string_view indent) {
    out += indent;
    out += "menuentry " + grub_quote(title) + " --id " + grub_quote(e.id) + " {\n";
    out += indent;
    out += "  linux " + grub_quote(e.kernel);
    // Rewritten so that the kernel reads what systemd-boot would pass it;
    // parameters GRUB cannot pass are left out (install names them).
    for (const auto& a : grub_linux_args(e.params).args) out += " " + grub_quote(a);
    out += " " + grub_quote("nixboot.entry=" + e.id) + " ${nixboot_args}\n";
    if (!e.initrd.empty()) {
        out += indent;
        out += "  initrd " + grub_quote(e.initrd) + "\n";
    }
    out += indent;
    out += "}\n";
}

}  // namespace

std::string grub_quote(std::string_view word) {
    std::string out = "'";
    for (char c : word) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    out += '\'';
    return out;
}

std::string entry_title(unsigned generation, std::string_view specialisation, std::time_t time,
                        std::string_view version) {
    std::tm tm{};
    ::gmtime_r(&time, &tm);
    std::array<char, 32> date{};
    std::strftime(date.data(), date.size(), "%Y-%m-%d", &tm);
    std::string inner;
    if (!specialisation.empty()) inner += std::string(specialisation) + " - ";
    inner += date.data();
    if (!version.empty()) inner += " - " + std::string(version);
    std::string title = "NixOS - Configuration " + std::to_string(generation) + " (" + inner + ")";
    std::replace_if(
        title.begin(), title.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }, ' ');
    return title;
}

std::string format_grub_cfg(const GrubCfgSpec& spec) {
    const MenuEntry* def = nullptr;
    for (const auto& e : spec.entries) {
        check_id(e.id, "entry");
        check_no_control(e.kernel, "kernel path", e.id);
        check_no_control(e.initrd, "initrd path", e.id);
        for (const auto& p : e.params) check_no_control(p, "kernel parameter '" + p + "'", e.id);
        if (e.id == spec.default_id) def = &e;
    }
    if (!def) throw Error("grub.cfg: default entry '" + spec.default_id + "' is not among the entries");
    if (!spec.env.fs_uuid.empty()) {
        check_no_control(spec.env.fs_uuid, "env filesystem UUID", "grubenv");
        check_no_control(spec.env.path, "env path", "grubenv");
    }

    std::string out;
    out.reserve(512 * spec.entries.size() + 4096);
    out += cfg_header;
    out +=
        "# The trial counting below is explained in nixboot's docs/grub.md.\n"
        "set timeout=" +
        std::to_string(spec.timeout) +
        "\n"
        "set default=" +
        grub_quote(def->id) +
        "\n"
        "set fallback=\"0\"\n";

    // Where the env block is.
    if (spec.env.fs_uuid.empty()) {
        out += "set nixboot_env=\"${prefix}/grubenv\"\n";
    } else {
        out +=
            "set nixboot_env=\"\"\n"
            "if search --no-floppy --fs-uuid --set=nixboot_env_dev " +
            grub_quote(spec.env.fs_uuid) +
            "; then\n"
            "  set nixboot_env=\"(${nixboot_env_dev})\"" +
            grub_quote(spec.env.path) +
            "\n"
            "fi\n";
    }
    out +=
        "set nixboot_trial=\"\"\n"
        "set nixboot_tries=\"\"\n"
        "set nixboot_default=\"\"\n"
        "set nixboot_next=\"\"\n"
        "set nixboot_args=\"\"\n"
        "if [ -f \"${nixboot_env}\" ]; then\n"
        "  load_env --file \"${nixboot_env}\" nixboot_trial nixboot_tries nixboot_default\n"
        "fi\n"
        "# Trials, verdicts and rollbacks change only grubenv (in place), never\n"
        "# this file. An ID that is not an entry here makes GRUB boot the first\n"
        "# entry, the default when this file was written.\n"
        "if [ -n \"${nixboot_default}\" ]; then\n"
        "  set default=\"${nixboot_default}\"\n"
        "fi\n"
        "# A trial is armed: boot it while grubenv has tries left for it.\n"
        "if [ -n \"${nixboot_trial}\" ]; then\n";
    append_decrement(out, "  ");
    if (spec.env.writer == EnvWriter::grub) {
        out +=
            "  if [ -n \"${nixboot_next}\" ]; then\n"
            "    # Consume the try on disk BEFORE the kernel loads; if it cannot be\n"
            "    # saved, the trial is not booted (the default is).\n"
            "    set nixboot_tries=\"${nixboot_next}\"\n"
            "    if save_env --file \"${nixboot_env}\" nixboot_tries; then\n"
            "      set default=\"${nixboot_trial}\"\n"
            "      set nixboot_args=\"nixboot.trial=${nixboot_trial} nixboot.tries=${nixboot_tries}\"\n"
            "    else\n"
            "      echo \"nixboot: cannot save grubenv; booting the default, not the trial\"\n"
            "    fi\n"
            "  elif [ \"${nixboot_tries}\" = \"0\" ]; then\n"
            "    # Tries spent: the default boots and userspace marks the trial bad.\n"
            "    set nixboot_args=\"nixboot.trial=${nixboot_trial} nixboot.tries=0\"\n"
            "  fi\n";
    } else {
        out +=
            "  # GRUB cannot write this grubenv: nixboot-stage1 consumes the try\n"
            "  # once the root filesystem is up.\n"
            "  if [ -n \"${nixboot_next}\" ]; then\n"
            "    set default=\"${nixboot_trial}\"\n"
            "    set nixboot_args=\"nixboot.trial=${nixboot_trial} nixboot.tries=${nixboot_next} nixboot.consume=stage1\"\n"
            "  elif [ \"${nixboot_tries}\" = \"0\" ]; then\n"
            "    set nixboot_args=\"nixboot.trial=${nixboot_trial} nixboot.tries=0 nixboot.consume=stage1\"\n"
            "  fi\n";
    }
    out += "fi\n";
    // Exported so that a menuentry run from a submenu someone adds still
    // sees it (a submenu only inherits exported variables; real GRUB 2.06).
    out += "export nixboot_args\n\n";

    // First: the default as of this file (what an unknown grubenv default
    // falls back to); then every entry, so grubenv can name any of them.
    append_entry(out, *def, "NixOS", "");
    for (const auto& e : spec.entries) append_entry(out, e, e.title, "");
    return out;
}

}  // namespace nixboot::grub
