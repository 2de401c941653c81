// Running the GRUB tools (grub-probe, grub-install): argv only, no shell,
// output captured and bounded.
#pragma once

#include <string>
#include <vector>

namespace nixboot::grub {

struct ProcessResult {
    int exit_status = -1;  // -1: killed by a signal
    std::string out;       // stdout, at most 1 MiB kept
    std::string err;       // stderr, at most 1 MiB kept
};

// Runs argv[0] (searched in PATH) with stdin from /dev/null. Throws SysError
// "running 'grub-probe': No such file or directory" when it cannot start.
ProcessResult run_process(const std::vector<std::string>& argv);

// The first line of `text` without its newline ("" for empty text).
std::string first_line(const std::string& text);

}  // namespace nixboot::grub
