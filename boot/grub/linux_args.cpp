#include "boot/grub/linux_args.hpp"

namespace nixboot::grub {

namespace {

// The characters grub-core/lib/cmdline.c puts a backslash before.
bool grub_escapes(char c) { return c == '\\' || c == '\'' || c == '"'; }

// Why `arg` (one parameter, name[=value]) does not reach the kernel unchanged.
std::string why_unpassable(std::string_view arg) {
    if (arg.empty()) return "it is an empty parameter, which GRUB passes as nothing";
    for (char c : arg)
        if (grub_escapes(c))
            return std::string("GRUB writes its ") + c + " as \\" + c + " and the kernel keeps the backslash";
    return "its byte 0xa0 separates parameters for the kernel, and GRUB quotes only arguments with a space";
}

}  // namespace

std::string grub_cmdline_word(std::string_view arg) {
    const bool space = arg.find(' ') != std::string_view::npos;
    std::string out;
    if (space) out += '"';
    for (char c : arg) {
        if (grub_escapes(c)) out += '\\';
        out += c;
    }
    if (space) out += '"';
    return out;
}

GrubLinuxArgs grub_linux_args(std::span<const std::string> params) {
    GrubLinuxArgs out;
    for (const auto& param : params) {
        const LinuxCmdline wanted = split_linux_cmdline(param);
        if (wanted.open_quote) {
            out.unpassable.push_back(
                {param,
                 "it ends inside double quotes (systemd-boot's kernel would read the parameters after it "
                 "as part of its value)"});
            continue;
        }
        std::vector<std::string> args;
        std::string reason;
        for (const auto& p : wanted.params) {
            std::string arg = p.name;
            if (p.value) arg += "=" + *p.value;
            // Passable exactly when the kernel reads GRUB's text for it back as this one parameter.
            if (split_linux_cmdline(grub_cmdline_word(arg)) != LinuxCmdline{{p}, false}) {
                reason = why_unpassable(arg);
                break;
            }
            args.push_back(std::move(arg));
        }
        if (!reason.empty()) {
            out.unpassable.push_back({param, reason});
            continue;
        }
        for (auto& a : args) out.args.push_back(std::move(a));
    }
    return out;
}

}  // namespace nixboot::grub
