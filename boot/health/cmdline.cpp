#include "boot/health/cmdline.hpp"

namespace nixboot::health {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Printable form of an untrusted value for a log line: bounded, controls escaped.
std::string quoted(std::string_view value) {
    constexpr std::size_t limit = 64;
    std::string out = "'";
    for (std::size_t i = 0; i < value.size() && i < limit; ++i) {
        unsigned char c = static_cast<unsigned char>(value[i]);
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (value.size() > limit) out += "...";
    out += "'";
    return out;
}

// Words may contain quotes that must be removed, so they are built as copies.
void split_words(std::string_view text, std::vector<std::string>& storage) {
    storage.clear();
    std::string word;
    bool in_word = false, in_quote = false;
    for (char c : text) {
        if (c == '"') {
            in_quote = !in_quote;
            in_word = true;
            continue;
        }
        if (!in_quote && is_space(c)) {
            if (in_word) storage.push_back(std::move(word));
            word.clear();
            in_word = false;
            continue;
        }
        word += c;
        in_word = true;
    }
    if (in_word) storage.push_back(std::move(word));
}

}  // namespace

bool valid_entry_id(std::string_view id) {
    if (id.empty() || id.size() > max_entry_id_bytes) return false;
    if (id.front() == '.' || id.front() == '-') return false;
    for (char c : id) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
        if (!ok) return false;
    }
    return true;
}

std::optional<unsigned> parse_decimal(std::string_view text, unsigned max) {
    if (text.empty() || text.size() > 10) return std::nullopt;
    unsigned long long value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > max) return std::nullopt;
    return static_cast<unsigned>(value);
}

KernelCmdline parse_kernel_cmdline(std::string_view text) {
    KernelCmdline out;
    if (text.size() > max_cmdline_bytes) {
        out.problems.push_back("kernel command line is " + std::to_string(text.size()) + " bytes, only the first " +
                               std::to_string(max_cmdline_bytes) + " are read");
        text = text.substr(0, max_cmdline_bytes);
    }
    std::vector<std::string> words;
    split_words(text, words);
    constexpr std::string_view prefix = "nixboot.";
    for (const std::string& word : words) {
        std::string_view w = word;
        if (w.substr(0, prefix.size()) != prefix) continue;
        auto eq = w.find('=');
        std::string_view key = w.substr(0, eq);
        std::string_view value = eq == std::string_view::npos ? std::string_view{} : w.substr(eq + 1);
        bool has_value = eq != std::string_view::npos;
        auto reject = [&](std::string_view why) {
            out.problems.push_back("ignoring kernel parameter " + quoted(w) + ": " + std::string(why));
        };
        if (key == "nixboot.entry" || key == "nixboot.trial") {
            if (!has_value || !valid_entry_id(value)) {
                reject("not an entry ID (1-200 of A-Z a-z 0-9 . _ -)");
                continue;
            }
            (key == "nixboot.entry" ? out.entry : out.grub_trial) = std::string(value);
        } else if (key == "nixboot.watchdog") {
            auto seconds = has_value ? parse_decimal(value, max_watchdog_seconds) : std::nullopt;
            if (!seconds) {
                reject("not a number of seconds from 0 to 86400");
                continue;
            }
            out.watchdog_seconds = seconds;
        } else if (key == "nixboot.tries") {
            auto tries = has_value ? parse_decimal(value, 1000) : std::nullopt;
            if (!tries) {
                reject("not a number of tries from 0 to 1000");
                continue;
            }
            out.grub_tries_left = tries;
        } else if (key == "nixboot.consume") {
            if (value == "stage1")
                out.consume = ConsumeBy::stage1;
            else if (value == "bootloader")
                out.consume = ConsumeBy::bootloader;
            else
                reject("expected 'stage1' or 'bootloader'");
        } else {
            reject("unknown nixboot parameter");
        }
    }
    return out;
}

std::string format_kernel_cmdline(const KernelCmdline& cmdline) {
    std::string out;
    auto add = [&out](std::string_view key, const std::string& value) {
        if (!out.empty()) out += ' ';
        out += key;
        out += '=';
        out += value;
    };
    if (cmdline.entry) add("nixboot.entry", *cmdline.entry);
    if (cmdline.watchdog_seconds) add("nixboot.watchdog", std::to_string(*cmdline.watchdog_seconds));
    if (cmdline.grub_trial) add("nixboot.trial", *cmdline.grub_trial);
    if (cmdline.grub_tries_left) add("nixboot.tries", std::to_string(*cmdline.grub_tries_left));
    if (cmdline.consume == ConsumeBy::stage1) add("nixboot.consume", "stage1");
    return out;
}

}  // namespace nixboot::health
