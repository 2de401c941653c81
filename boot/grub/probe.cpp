#include "boot/grub/probe.hpp"

#include "boot/util/process.hpp"
#include "boot/util/error.hpp"

#include <algorithm>
#include <sstream>

namespace nixboot::grub {

namespace {

std::vector<std::string> split(std::string_view text, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : text) {
        if (c == sep) {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
    return s;
}

}  // namespace

FsInfo parse_probe_override(std::string_view text, std::string_view origin) {
    FsInfo info;
    for (const auto& word : split(text, ' ')) {
        const auto eq = word.find('=');
        const std::string key = word.substr(0, eq);
        const std::string value = eq == std::string::npos ? "" : word.substr(eq + 1);
        if (key == "fs" && !value.empty())
            info.fs = value;
        else if (key == "abstraction")
            info.abstractions = split(value, ',');
        else if (key == "uuid" && !value.empty())
            info.fs_uuid = value;
        else
            throw UsageError(std::string(origin) + ": '" + word + "' is not fs=NAME, abstraction=A[,B] or uuid=UUID");
    }
    if (info.fs.empty()) throw UsageError(std::string(origin) + ": no fs=NAME given");
    return info;
}

FsInfo GrubProbe::probe(const std::filesystem::path& dir) const {
    FsInfo info;
    auto ask = [&](const char* target, std::string& out) {
        auto r = run_process({"grub-probe", std::string("--target=") + target, dir.string()});
        if (r.exit_status != 0) {
            if (info.error.empty())
                info.error = "grub-probe --target=" + std::string(target) + " " + dir.string() + ": " +
                             (r.err.empty() ? "exit status " + std::to_string(r.exit_status) : first_line(r.err));
            return false;
        }
        out = trim(r.out);
        return true;
    };
    try {
        if (!ask("fs", info.fs)) return info;
        std::string abstraction;
        if (!ask("abstraction", abstraction)) return info;
        for (const auto& a : split(abstraction, ' '))
            for (const auto& b : split(a, '\n')) info.abstractions.push_back(b);
        ask("fs_uuid", info.fs_uuid);  // some filesystems have none: not an error
        if (info.fs_uuid.empty()) info.error.clear();
    } catch (const Error& e) {
        info.error = e.what();
    }
    return info;
}

FsInfo FixedProbe::probe(const std::filesystem::path& dir) const {
    if (auto it = answers_.find(dir); it != answers_.end()) return it->second;
    FsInfo info;
    info.error = "no probe result given for " + dir.string();
    return info;
}

WriteVerdict grub_can_write(const FsInfo& info) {
    if (!info.error.empty()) return {Writability::unknown, "cannot tell: " + info.error};
    if (!info.abstractions.empty()) {
        std::string list;
        for (const auto& a : info.abstractions) list += (list.empty() ? "" : ",") + a;
        return {Writability::not_writable, info.fs + " on " + list + ": GRUB cannot write through " + list};
    }
    if (info.fs == "fat" || info.fs == "ext2")
        return {Writability::writable, info.fs + " on a plain partition: GRUB can write its env block"};
    return {Writability::not_writable, info.fs + ": GRUB cannot write its env block on " + info.fs};
}

EnvPlacement place_env(const FsInfo& boot, const std::optional<FsInfo>& esp) {
    const WriteVerdict b = grub_can_write(boot);
    if (b.writability == Writability::writable)
        return {EnvPlacement::Where::boot, EnvWriter::grub, "", "/boot: " + b.reason};
    std::string why = "/boot: " + b.reason;
    if (esp) {
        const WriteVerdict e = grub_can_write(*esp);
        if (e.writability == Writability::writable && !esp->fs_uuid.empty())
            return {EnvPlacement::Where::esp, EnvWriter::grub, esp->fs_uuid,
                    why + "; the env block is on the ESP (" + e.reason + ")"};
        why += e.writability == Writability::writable ? "; the ESP has no filesystem UUID" : "; ESP: " + e.reason;
    } else {
        why += "; no ESP to put it on";
    }
    return {EnvPlacement::Where::boot, EnvWriter::stage1, "",
            why +
                ". nixboot-stage1 consumes each try once the root filesystem is mounted, so a "
                "trial that panics or hangs before that is booted again and again"};
}

}  // namespace nixboot::grub
