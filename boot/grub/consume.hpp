// The stage-1 side of GRUB trials where GRUB cannot write its env block
// (docs/grub.md, "Where GRUB cannot write"). Depends only on grubenv and the
// RootDir writer, so the static nixboot-stage1 can link it alone
// (boot/grub/consume.cpp, boot/grub/grubenv.cpp, boot/util/{dir,fd,error}.cpp).
#pragma once

#include <filesystem>
#include <string_view>

namespace nixboot::grub {

enum class ConsumeResult {
    consumed,          // nixboot_tries lowered to tries_after
    already_consumed,  // it was already at (or below) tries_after
    not_armed,         // no env block, or it arms another trial
};

// For nixboot-stage1 when the command line says nixboot.consume=stage1: sets
// nixboot_tries in the env block at `grubenv` to `tries_after` (the
// nixboot.tries GRUB put on the command line) if it still names `trial` with
// more tries than that. Idempotent within a boot. Throws Error (ParseError
// for a block it cannot parse, which it never rewrites).
ConsumeResult consume_try_in_userspace(const std::filesystem::path& grubenv, std::string_view trial,
                                       unsigned tries_after);

}  // namespace nixboot::grub
