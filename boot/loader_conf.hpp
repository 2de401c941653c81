// loader/loader.conf: "key value" lines. nixboot manages a few keys (default,
// timeout, ...) and keeps every other line — comments, blank lines, unknown
// keys, their order — byte for byte.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

class LoaderConf {
public:
    // Never fails on unknown keys; throws ParseError "ORIGIN:LINE: REASON"
    // only for NUL bytes or a file over 64 KiB.
    static LoaderConf parse(std::string_view text, std::string_view origin);
    // Inverse of parse: untouched lines verbatim, set keys as "key value".
    // A non-empty result always ends with '\n'.
    std::string format() const;

    // Value of the last line setting `key` (systemd-boot: last one wins).
    std::optional<std::string> get(std::string_view key) const;
    // Replaces the value in place on the first line of `key`, drops later
    // lines of `key`; appends "key value" if absent. Throws UsageError for an
    // empty/odd key or a value with newline/NUL or leading/trailing space.
    void set(std::string_view key, std::string_view value);
    // Removes every line of `key`; false if there was none.
    bool unset(std::string_view key);

    bool operator==(const LoaderConf&) const = default;

private:
    struct Line {
        std::string raw;  // the line as read (without '\n'), or as formatted
        std::string key;  // empty for comments/blank lines
        std::string value;
        bool operator==(const Line&) const = default;
    };
    std::vector<Line> lines_;
};

}  // namespace nixboot
