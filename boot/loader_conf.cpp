#include "boot/loader_conf.hpp"

#include "boot/util/error.hpp"
#include "boot/util/utf16.hpp"

#include <algorithm>

namespace nixboot {

namespace {

constexpr std::size_t max_conf_bytes = 64 * 1024;

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && (is_space(s.back()) || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

bool valid_key(std::string_view key) {
    return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
               c == '@';
    });
}

}  // namespace

LoaderConf LoaderConf::parse(std::string_view text, std::string_view origin_view) {
    const std::string origin(origin_view);
    if (text.size() > max_conf_bytes)
        throw ParseError(origin + ": larger than " + std::to_string(max_conf_bytes) + " bytes");
    LoaderConf conf;
    unsigned line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        ++line_no;
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view raw = text.substr(pos, end - pos);
        pos = end + 1;
        if (raw.find('\0') != std::string_view::npos)
            throw ParseError(origin + ":" + std::to_string(line_no) + ": line contains a NUL byte");
        Line line{std::string(raw), "", ""};
        const std::string_view content = trim(raw);
        if (!content.empty() && content.front() != '#') {
            const std::size_t key_end = std::find_if(content.begin(), content.end(), is_space) - content.begin();
            line.key = content.substr(0, key_end);
            line.value = trim(content.substr(key_end));
        }
        conf.lines_.push_back(std::move(line));
    }
    return conf;
}

std::string LoaderConf::format() const {
    std::string out;
    for (const Line& line : lines_) out.append(line.raw).append("\n");
    return out;
}

std::optional<std::string> LoaderConf::get(std::string_view key) const {
    std::optional<std::string> value;
    for (const Line& line : lines_)
        if (line.key == key) value = line.value;
    return value;
}

void LoaderConf::set(std::string_view key, std::string_view value) {
    if (!valid_key(key)) throw UsageError("loader.conf: '" + std::string(key) + "' is not a valid key");
    if (value.find_first_of(std::string_view("\n\r\0", 3)) != std::string_view::npos)
        throw UsageError("loader.conf: value for '" + std::string(key) + "' contains a line break or NUL");
    if (trim(value) != value)
        throw UsageError("loader.conf: value for '" + std::string(key) + "' has leading or trailing whitespace");
    try {
        validate_utf8(value);
    } catch (const Error& e) {
        throw UsageError("loader.conf: value for '" + std::string(key) + "' is not valid UTF-8 (" + e.what() + ")");
    }
    const std::string raw = value.empty() ? std::string(key) : std::string(key) + " " + std::string(value);
    bool placed = false;
    std::vector<Line> kept;
    kept.reserve(lines_.size() + 1);
    for (Line& line : lines_) {
        if (line.key != key) {
            kept.push_back(std::move(line));
        } else if (!placed) {
            if (line.value != value) line = Line{raw, std::string(key), std::string(value)};
            kept.push_back(std::move(line));
            placed = true;
        }
    }
    if (!placed) kept.push_back(Line{raw, std::string(key), std::string(value)});
    lines_ = std::move(kept);
}

bool LoaderConf::unset(std::string_view key) {
    const auto before = lines_.size();
    std::erase_if(lines_, [&](const Line& line) { return line.key == key; });
    return lines_.size() != before;
}

}  // namespace nixboot
