#include "boot/grub/state.hpp"

#include "boot/util/sha256.hpp"
#include "boot/util/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <set>

namespace nixboot::grub {

using nlohmann::json;

EntryRecord* GrubState::find(std::string_view id) {
    for (auto& e : entries)
        if (e.id == id) return &e;
    return nullptr;
}

const EntryRecord* GrubState::find(std::string_view id) const {
    for (const auto& e : entries)
        if (e.id == id) return &e;
    return nullptr;
}

void sort_entries(std::vector<EntryRecord>& entries) {
    std::sort(entries.begin(), entries.end(), [](const EntryRecord& a, const EntryRecord& b) {
        if (a.generation != b.generation) return a.generation > b.generation;
        if (a.specialisation.empty() != b.specialisation.empty()) return a.specialisation.empty();
        return a.specialisation < b.specialisation;
    });
}

namespace {

struct Reader {
    std::string origin;

    [[noreturn]] void fail(const std::string& why) const { throw ParseError(origin + ": " + why); }

    const json& field(const json& obj, const char* key, std::string_view where) const {
        auto it = obj.find(key);
        if (it == obj.end()) fail(std::string(where) + "missing \"" + key + "\"");
        return *it;
    }
    std::string str(const json& obj, const char* key, std::string_view where) const {
        const json& v = field(obj, key, where);
        if (!v.is_string()) fail(std::string(where) + "\"" + key + "\" is not a string");
        return v.get<std::string>();
    }
    std::uint64_t num(const json& obj, const char* key, std::string_view where) const {
        const json& v = field(obj, key, where);
        if (!v.is_number_unsigned()) fail(std::string(where) + "\"" + key + "\" is not a non-negative integer");
        return v.get<std::uint64_t>();
    }
    std::optional<std::string> opt_str(const json& obj, const char* key) const {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return std::nullopt;
        if (!it->is_string()) fail(std::string("\"") + key + "\" is not a string or null");
        return it->get<std::string>();
    }
};

EntryState parse_entry_state(const Reader& r, const std::string& text, const std::string& where) {
    if (text == "good") return EntryState::good;
    if (text == "trial") return EntryState::trial;
    if (text == "bad") return EntryState::bad;
    r.fail(where + "unknown state '" + text + "'");
}

}  // namespace

GrubState parse_state(std::string_view text, std::string_view origin) {
    Reader r{std::string(origin)};
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::exception& e) {
        r.fail(std::string("not JSON: ") + e.what());
    }
    if (!doc.is_object()) r.fail("not a JSON object");
    if (r.str(doc, "format", "") != state_format) r.fail("\"format\" is not \"" + std::string(state_format) + "\"");
    GrubState s;
    s.default_id = r.opt_str(doc, "default");
    s.trial_id = r.opt_str(doc, "trial");
    const json& entries = r.field(doc, "entries", "");
    if (!entries.is_array()) r.fail("\"entries\" is not an array");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const json& e = entries[i];
        const std::string where = "entry " + std::to_string(i) + ": ";
        if (!e.is_object()) r.fail(where + "not an object");
        EntryRecord rec;
        rec.id = r.str(e, "id", where);
        auto parsed = parse_entry_id(rec.id);
        if (!parsed) r.fail(where + "'" + rec.id + "' is not an entry ID");
        rec.generation = parsed->generation;
        rec.specialisation = parsed->specialisation;
        if (!seen.insert(rec.id).second) r.fail(where + "duplicate entry '" + rec.id + "'");
        rec.state = parse_entry_state(r, r.str(e, "state", where), where);
        const auto tries = r.num(e, "tries", where);
        if (tries > 1000) r.fail(where + "\"tries\" is more than 1000");
        rec.tries = static_cast<unsigned>(tries);
        rec.title = r.str(e, "title", where);
        rec.version = r.str(e, "version", where);
        rec.kernel = r.str(e, "kernel", where);
        rec.initrd = r.str(e, "initrd", where);
        for (const std::string* path : {&rec.kernel, &rec.initrd}) {
            if (path == &rec.initrd && path->empty()) continue;
            const std::string name = path->starts_with("kernels/") ? path->substr(8) : "";
            if (name.empty() || name.find('/') != std::string::npos || name.starts_with(".") ||
                name.find_first_of(std::string_view("'\0\n", 3)) != std::string::npos)
                r.fail(where + "'" + *path + "' is not a file under kernels/");
        }
        const json& params = r.field(e, "params", where);
        if (!params.is_array()) r.fail(where + "\"params\" is not an array");
        for (const auto& p : params) {
            if (!p.is_string()) r.fail(where + "a parameter is not a string");
            rec.params.push_back(p.get<std::string>());
        }
        s.entries.push_back(std::move(rec));
    }
    if (auto it = doc.find("copies"); it != doc.end()) {
        if (!it->is_object()) r.fail("\"copies\" is not an object");
        for (const auto& [src, c] : it->items()) {
            const std::string where = "copy of '" + src + "': ";
            if (!c.is_object()) r.fail(where + "not an object");
            s.copies[src] = {r.str(c, "name", where), r.num(c, "size", where), r.num(c, "mtime_ns", where),
                             r.num(c, "ino", where)};
        }
    }
    return s;
}

std::string format_state(const GrubState& s) {
    auto opt = [](const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); };
    std::string out = "{\"format\": " + json(state_format).dump() + ",\n \"default\": " + opt(s.default_id).dump() +
                      ",\n \"trial\": " + opt(s.trial_id).dump() + ",\n \"entries\": [";
    bool first = true;
    for (const auto& e : s.entries) {
        json j = json::object();
        j["id"] = e.id;
        j["state"] = std::string(to_string(e.state));
        j["tries"] = e.tries;
        j["title"] = e.title;
        j["version"] = e.version;
        j["kernel"] = e.kernel;
        j["initrd"] = e.initrd;
        j["params"] = e.params;
        out += (first ? "\n  " : ",\n  ") + j.dump(-1, ' ', false, json::error_handler_t::replace);
        first = false;
    }
    out += "],\n \"copies\": {";
    first = true;
    for (const auto& [src, c] : s.copies) {
        json j = {{"name", c.name}, {"size", c.size}, {"mtime_ns", c.mtime_ns}, {"ino", c.ino}};
        out += (first ? "\n  " : ",\n  ") + json(src).dump() + ": " + j.dump();
        first = false;
    }
    out += "}}\n";
    return out;
}

namespace {

std::optional<std::uint64_t> header_number(std::string_view header, std::string_view key) {
    const std::string k = " " + std::string(key) + "=";
    auto p = header.find(k);
    if (p == std::string_view::npos) return std::nullopt;
    p += k.size();
    auto e = header.find(' ', p);
    const std::string_view text = header.substr(p, e == std::string_view::npos ? std::string_view::npos : e - p);
    std::uint64_t v = 0;
    auto [q, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || q != text.data() + text.size()) return std::nullopt;
    return v;
}

}  // namespace

StateSlot parse_state_slot(std::string_view text, std::string_view origin) {
    const auto checked = check_state_slot(text, origin);
    return {checked.seq, parse_state(checked.json, origin)};
}

CheckedSlot check_state_slot(std::string_view text, std::string_view origin) {
    const std::string o(origin);
    auto nl = text.find('\n');
    if (nl == std::string_view::npos || nl > 512) throw ParseError(o + ": no header line");
    const std::string_view header = text.substr(0, nl);
    if (!header.starts_with(state_slot_magic) ||
        (header.size() > state_slot_magic.size() && header[state_slot_magic.size()] != ' '))
        throw ParseError(o + ": does not start with \"" + std::string(state_slot_magic) + "\"");
    const auto seq = header_number(header, "seq");
    const auto length = header_number(header, "length");
    const auto hp = header.find(" sha256=");
    if (!seq || !length || hp == std::string_view::npos)
        throw ParseError(o + ": header lacks seq=, length= or sha256=");
    const std::string_view want = header.substr(hp + 8, 64);
    const std::string_view body = text.substr(nl + 1);
    if (*length > body.size())
        throw ParseError(o + ": torn or truncated (length=" + std::to_string(*length) + ", " +
                         std::to_string(body.size()) + " bytes follow the header)");
    const std::string_view json_text = body.substr(0, *length);
    if (sha256_hex(json_text) != want) throw ParseError(o + ": torn write (checksum mismatch)");
    return {*seq, json_text};
}

std::string format_state_slot(const GrubState& state, std::uint64_t seq, std::size_t size) {
    const std::string body = format_state(state);
    std::string out = std::string(state_slot_magic) + " seq=" + std::to_string(seq) +
                      " length=" + std::to_string(body.size()) + " sha256=" + sha256_hex(body) + "\n" + body;
    if (size < out.size()) {
        const std::size_t want = out.size() + std::max<std::size_t>(body.size() / 4, 2048);
        size = (want + 4095) / 4096 * 4096;
    }
    out.resize(size, '\n');
    return out;
}

}  // namespace nixboot::grub
