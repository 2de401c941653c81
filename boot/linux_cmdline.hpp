// How Linux splits its command line into parameters: a port of next_arg()
// in Linux's lib/cmdline.c (the same rule from v5.x to v6.x), written anew.
// It decides what a kernel parameter *is*, so that two loaders that write the
// command line differently can be checked to pass the same parameters.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

// One parameter as the kernel reads it: `name`, or `name=value`.
struct LinuxParam {
    std::string name;
    std::optional<std::string> value;  // none without '='; "" for "name="
    bool operator==(const LinuxParam&) const = default;
};

struct LinuxCmdline {
    std::vector<LinuxParam> params;
    // The text ended inside double quotes: under the kernel, whatever
    // follows it on the command line would join its last parameter.
    bool open_quote = false;
    bool operator==(const LinuxCmdline&) const = default;
};

// Splits `text` as the kernel does. Whitespace (the kernel's isspace: space,
// \t \n \v \f \r, and the byte 0xa0) separates parameters except inside
// double quotes; there is no escape character. The name ends at the first
// '='. A value that starts with '"' loses it, and its last '"' if the
// parameter ends with one; a parameter that starts with '"' loses that and a
// final '"'. Every other quote is part of the name or value.
LinuxCmdline split_linux_cmdline(std::string_view text);

}  // namespace nixboot
