// Boot Loader Specification Type #1 entries (loader/entries/*.conf).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nixboot {

struct BlsEntry {
    std::optional<std::string> title;
    std::optional<std::string> version;
    std::optional<std::string> sort_key;    // "sort-key"
    std::optional<std::string> machine_id;  // "machine-id"
    std::optional<std::string> kernel;      // "linux" (path from the ESP root, '/'-separated)
    std::vector<std::string> initrds;       // "initrd", one line each, in order
    std::optional<std::string> options;     // "options"; several lines are joined with ' '
    std::optional<std::string> devicetree;
    std::optional<std::string> architecture;
    // Keys this struct does not model, in file order (repeats kept).
    std::vector<std::pair<std::string, std::string>> other;

    bool operator==(const BlsEntry&) const = default;
};

// Parses entry text. `origin` names the file in errors:
// "loader/entries/x.conf:3: key 'linux' has no value". Comment and blank lines
// are skipped; keys are [a-z0-9-]+; values are trimmed; lines must be valid UTF-8
// without control characters other than tab (bootctl 252 fails the whole
// listing on invalid UTF-8). Max 64 KiB.
BlsEntry parse_bls_entry(std::string_view text, std::string_view origin);

// Formats in the order title, version, sort-key, machine-id, linux, initrd...,
// devicetree, options, architecture, then `other`; one "key value" per line.
// parse_bls_entry(format_bls_entry(e)) == e for every valid `e`. Throws Error
// if a key or value would not survive the round trip (newline, empty value,
// leading/trailing space, bad key).
std::string format_bls_entry(const BlsEntry& entry);

}  // namespace nixboot
