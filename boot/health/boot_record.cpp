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

} // namespace

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
        throw ParseError(std::string(origin) + ": larger than " +
                         std::to_string(max_boot_record_bytes) + " bytes");
    BootRecord r;
    unsigned line_no = 0;
    while (!text.empty()) {
        ++line_no;
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line.empty()) continue;
        auto fail = [&](const std::string& why) {
            throw ParseError(std::string(origin) + ":" + std::to_string(line_no) + ": " + why);
        };
        auto eq = line.find('=');
        if (eq == std::string_view::npos) fail("line has no '='");
        std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
        auto bad_value = [&] { fail("bad value '" + std::string(value) + "' for '" + std::string(key) + "'"); };
        if (key == "bootloader") {
            if (value == "systemd-boot") r.bootloader = Bootloader::systemd_boot;
            else if (value == "grub") r.bootloader = Bootloader::grub;
            else if (value == "unknown") r.bootloader.reset();
            else bad_value();
        } else if (key == "entry") {
            if (!value.empty() && !valid_entry_id(value)) bad_value();
            r.entry = std::string(value);
        } else if (key == "file") {
            if (!valid_file(value)) bad_value();
            r.file = std::string(value);
        } else if (key == "trial") {
            if (value == "1") r.trial = TrialBoot::yes;
            else if (value == "0") r.trial = TrialBoot::no;
            else bad_value();
        } else if (key == "tries-left") {
            auto n = parse_decimal(value, 4294967295u);
            if (!n) bad_value();
            r.tries_left = *n;
        } else if (key == "consumed-by") {
            if (value == "bootloader") r.consumed_by = ConsumedBy::bootloader;
            else if (value == "stage1") r.consumed_by = ConsumedBy::stage1;
            else if (value == "none") r.consumed_by = ConsumedBy::none;
            else bad_value();
        } else if (key == "watchdog") {
            if (value == "armed") r.watchdog = WatchdogState::armed;
            else if (value == "off") r.watchdog = WatchdogState::off;
            else if (value == "unavailable") r.watchdog = WatchdogState::unavailable;
            else bad_value();
        }
    }
    return r;
}

} // namespace nixboot::health
