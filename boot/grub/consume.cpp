#include "boot/grub/consume.hpp"

#include "boot/grub/grubenv.hpp"
#include "boot/util/dir.hpp"

#include <optional>
#include <string>

namespace nixboot::grub {

namespace {

// A strict decimal 0..1000; nullopt for anything else.
std::optional<unsigned> tries_value(const std::string& text) {
    if (text.empty() || text.size() > 4 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
    unsigned v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    return v <= 1000 ? std::optional<unsigned>(v) : std::nullopt;
}

}  // namespace

ConsumeResult consume_try_in_userspace(const std::filesystem::path& grubenv, std::string_view trial,
                                       unsigned tries_after) {
    auto dir = RootDir::open(grubenv.parent_path());
    const std::string name = grubenv.filename().string();
    auto env = read_grubenv(dir, name);
    if (!env || env->get("nixboot_trial") != trial) return ConsumeResult::not_armed;
    const auto tries = tries_value(env->get("nixboot_tries").value_or(""));
    if (tries && *tries <= tries_after) return ConsumeResult::already_consumed;
    env->set("nixboot_tries", std::to_string(tries_after));
    write_grubenv(dir, name, *env, Sync::yes);
    return ConsumeResult::consumed;
}

}  // namespace nixboot::grub
