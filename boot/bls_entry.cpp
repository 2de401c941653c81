#include "boot/bls_entry.hpp"

#include "boot/util/error.hpp"
#include "boot/util/utf16.hpp"

#include <algorithm>
#include <map>

namespace nixboot {

namespace {

constexpr std::size_t max_entry_bytes = 64 * 1024;

bool is_space(char c) { return c == ' ' || c == '\t'; }

bool is_key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool valid_key(std::string_view key) { return !key.empty() && std::all_of(key.begin(), key.end(), is_key_char); }

// Returns the first disallowed character's description, or "" if fine.
std::string bad_char(std::string_view value) {
    for (unsigned char c : value) {
        if (c == '\t') continue;
        if (c < 0x20 || c == 0x7f) {
            char buffer[8];
            std::snprintf(buffer, sizeof buffer, "0x%02x", c);
            return std::string("control character ") + buffer;
        }
    }
    return "";
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

}  // namespace

BlsEntry parse_bls_entry(std::string_view text, std::string_view origin_view) {
    const std::string origin(origin_view);
    if (text.size() > max_entry_bytes)
        throw ParseError(origin + ": larger than " + std::to_string(max_entry_bytes) + " bytes");
    BlsEntry entry;
    std::map<std::string, unsigned> seen_single;  // key -> line, for duplicates
    unsigned line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        ++line_no;
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const std::string where = origin + ":" + std::to_string(line_no) + ": ";
        if (std::string why = bad_char(line); !why.empty()) throw ParseError(where + "line contains a " + why);
        try {
            validate_utf8(line);
        } catch (const Error& e) {
            throw ParseError(where + "line is not valid UTF-8 (" + e.what() + ")");
        }
        line = trim(line);
        if (line.empty() || line.front() == '#') continue;
        const std::size_t key_end = std::find_if(line.begin(), line.end(), is_space) - line.begin();
        const std::string key(line.substr(0, key_end));
        const std::string value(trim(line.substr(key_end)));
        if (!valid_key(key)) throw ParseError(where + "'" + key + "' is not a valid key");
        if (value.empty()) throw ParseError(where + "key '" + key + "' has no value");

        auto single = [&](std::optional<std::string>& field) {
            if (auto [it, inserted] = seen_single.emplace(key, line_no); !inserted)
                throw ParseError(where + "key '" + key + "' appears again (first on line " +
                                 std::to_string(it->second) + ")");
            field = value;
        };
        if (key == "title")
            single(entry.title);
        else if (key == "version")
            single(entry.version);
        else if (key == "sort-key")
            single(entry.sort_key);
        else if (key == "machine-id")
            single(entry.machine_id);
        else if (key == "linux")
            single(entry.kernel);
        else if (key == "devicetree")
            single(entry.devicetree);
        else if (key == "architecture")
            single(entry.architecture);
        else if (key == "initrd")
            entry.initrds.push_back(value);
        else if (key == "options")
            entry.options = entry.options ? *entry.options + " " + value : value;
        else
            entry.other.emplace_back(key, value);
    }
    return entry;
}

std::string format_bls_entry(const BlsEntry& entry) {
    std::string out;
    auto line = [&](std::string_view key, std::string_view value) {
        if (!valid_key(key)) throw Error("BLS entry: '" + std::string(key) + "' is not a valid key");
        const std::string shown = "BLS entry: value of '" + std::string(key) + "'";
        if (value.empty()) throw Error(shown + " is empty");
        if (trim(value) != value) throw Error(shown + " has leading or trailing whitespace");
        if (std::string why = bad_char(value); !why.empty()) throw Error(shown + " contains a " + why);
        try {
            validate_utf8(value);
        } catch (const Error& e) {
            throw Error(shown + " is not valid UTF-8 (" + e.what() + ")");
        }
        out.append(key).append(" ").append(value).append("\n");
    };
    auto optional_line = [&](std::string_view key, const std::optional<std::string>& value) {
        if (value) line(key, *value);
    };
    optional_line("title", entry.title);
    optional_line("version", entry.version);
    optional_line("sort-key", entry.sort_key);
    optional_line("machine-id", entry.machine_id);
    optional_line("linux", entry.kernel);
    for (const std::string& initrd : entry.initrds) line("initrd", initrd);
    optional_line("devicetree", entry.devicetree);
    optional_line("options", entry.options);
    optional_line("architecture", entry.architecture);
    static const char* const modelled[] = {"title",  "version",    "sort-key", "machine-id",  "linux",
                                           "initrd", "devicetree", "options",  "architecture"};
    for (const auto& [key, value] : entry.other) {
        if (std::find(std::begin(modelled), std::end(modelled), key) != std::end(modelled))
            throw Error("BLS entry: key '" + key + "' belongs in its own field, not in 'other'");
        if (key.starts_with('#')) throw Error("BLS entry: key '" + key + "' would be a comment");
        line(key, value);
    }
    return out;
}

}  // namespace nixboot
