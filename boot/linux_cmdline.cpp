#include "boot/linux_cmdline.hpp"

namespace nixboot {

namespace {

// The kernel's isspace() (lib/ctype.c): ASCII whitespace and 0xa0, which
// its Latin-1 table counts as a space.
bool is_kernel_space(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u == ' ' || (u >= '\t' && u <= '\r') || u == 0xa0;
}

// The NUL-terminated string at `at` in `buf`, as the kernel's pointers see it.
std::string c_string_at(const std::string& buf, std::size_t at) { return std::string(buf.c_str() + at); }

}  // namespace

LinuxCmdline split_linux_cmdline(std::string_view text) {
    // The kernel's command line is a C string.
    text = text.substr(0, text.find('\0'));
    LinuxCmdline out;
    std::size_t p = 0;
    while (p < text.size() && is_kernel_space(text[p])) ++p;
    while (p < text.size()) {
        bool in_quote = false, quoted = false;
        if (text[p] == '"') {
            ++p;
            in_quote = quoted = true;
        }
        // Like the kernel, 0 means "no '=' yet": a leading '=' is part of the name.
        std::size_t i = 0, equals = 0;
        for (; p + i < text.size(); ++i) {
            const char c = text[p + i];
            if (is_kernel_space(c) && !in_quote) break;
            if (equals == 0 && c == '=') equals = i;
            if (c == '"') in_quote = !in_quote;
        }
        // The kernel cuts the parameter in place by writing NULs; so does this copy.
        std::string buf(text.substr(p, i));
        std::optional<std::size_t> value_at;
        if (equals != 0) {
            buf[equals] = '\0';
            value_at = equals + 1;
            if (*value_at < i && buf[*value_at] == '"') {
                ++*value_at;
                if (buf[i - 1] == '"') buf[i - 1] = '\0';
            }
        }
        if (quoted && i > 0 && buf[i - 1] == '"') buf[i - 1] = '\0';
        out.params.push_back(
            {c_string_at(buf, 0), value_at ? std::optional(c_string_at(buf, *value_at)) : std::nullopt});
        out.open_quote = in_quote;
        p += i;
        while (p < text.size() && is_kernel_space(text[p])) ++p;
    }
    return out;
}

}  // namespace nixboot
