#include "boot/health/boot_record.hpp"

#include "boot/health/cmdline.hpp"
#include "boot/util/error.hpp"

namespace nixboot::health {

const char* to_string(ConsumedBy consumed) noexcept {
    switch (consumed) {
        case ConsumedBy::bootloader: return "bootloader";
        case ConsumedBy::stage1: return "stage1";
        case ConsumedBy::none: break;
    }
    return "none";
}

const char* to_string(WatchdogState state) noexcept {
    switch (state) {
        case WatchdogState::armed: return "armed";
        case WatchdogState::unavailable: return "unavailable";
        case WatchdogState::off: break;
    }
    return "off";
}

namespace {

// Not nixboot::to_string(Bootloader): that lives with the backends, which the
// static hook does not link.
const char* bootloader_name(const std::optional<Bootloader>& b) {
    if (!b) return "unknown";
    return *b == Bootloader::grub ? "grub" : "systemd-boot";
}

bool valid_file(std::string_view file) {
    if (file.size() > 512) return false;
    for (char c : file)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
    return true;
}

}  // namespace

std::string format_boot_record(const BootRecord& r) {
    std::string out;
    out += "bootloader=";
    out += bootloader_name(r.bootloader);
    out += "\nentry=" + r.entry;
    out += "\nfile=" + r.file;
    out += "\ntrial=";
    out += r.trial == TrialBoot::yes ? "1" : "0";
    out += "\ntries-left=" + std::to_string(r.tries_left);
    out += "\nconsumed-by=";
    out += to_string(r.consumed_by);
    out += "\nwatchdog=";
    out += to_string(r.watchdog);
    out += "\n";
    return out;
}

BootRecord parse_boot_record(std::string_view text, std::string_view origin) {
    if (text.size() > max_boot_record_bytes)
        throw ParseError(std::string(origin) + ": larger than " + std::to_string(max_boot_record_bytes) + " bytes");
    BootRecord r;
    for_each_key_value(text, origin, [&](const KeyValueLine& kv) {
        const std::string_view key = kv.key, value = kv.value;
        if (key == "bootloader") {
            if (value == "systemd-boot")
                r.bootloader = Bootloader::systemd_boot;
            else if (value == "grub")
                r.bootloader = Bootloader::grub;
            else if (value == "unknown")
                r.bootloader.reset();
            else
                kv.bad_value();
        } else if (key == "entry") {
            if (!value.empty() && !valid_entry_id(value)) kv.bad_value();
            r.entry = std::string(value);
        } else if (key == "file") {
            if (!valid_file(value)) kv.bad_value();
            r.file = std::string(value);
        } else if (key == "trial") {
            if (value == "1")
                r.trial = TrialBoot::yes;
            else if (value == "0")
                r.trial = TrialBoot::no;
            else
                kv.bad_value();
        } else if (key == "tries-left") {
            auto n = parse_decimal(value, 4294967295u);
            if (!n) kv.bad_value();
            r.tries_left = *n;
        } else if (key == "consumed-by") {
            if (value == "bootloader")
                r.consumed_by = ConsumedBy::bootloader;
            else if (value == "stage1")
                r.consumed_by = ConsumedBy::stage1;
            else if (value == "none")
                r.consumed_by = ConsumedBy::none;
            else
                kv.bad_value();
        } else if (key == "watchdog") {
            if (value == "armed")
                r.watchdog = WatchdogState::armed;
            else if (value == "off")
                r.watchdog = WatchdogState::off;
            else if (value == "unavailable")
                r.watchdog = WatchdogState::unavailable;
            else
                kv.bad_value();
        }
    });
    return r;
}

}  // namespace nixboot::health
