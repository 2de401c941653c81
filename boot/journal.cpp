#include "boot/journal.hpp"

#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace nixboot {

namespace {

using nlohmann::ordered_json;

constexpr const char* journal_file = "journal";
constexpr std::size_t max_journal_bytes = 64 * 1024 * 1024;

constexpr std::array<std::pair<JournalEvent, const char*>, 13> event_names{{
    {JournalEvent::install, "install"},
    {JournalEvent::adopt, "adopt"},
    {JournalEvent::arm, "arm"},
    {JournalEvent::boot, "boot"},
    {JournalEvent::good, "good"},
    {JournalEvent::bad, "bad"},
    {JournalEvent::promote, "promote"},
    {JournalEvent::default_, "default"},
    {JournalEvent::rollback, "rollback"},
    {JournalEvent::live_start, "live-start"},
    {JournalEvent::live_confirm, "live-confirm"},
    {JournalEvent::live_revert, "live-revert"},
    {JournalEvent::gc, "gc"},
}};

std::string format_time(std::time_t time) {
    std::tm tm{};
    if (!::gmtime_r(&time, &tm)) throw Error("journal: time " + std::to_string(time) + " out of range");
    char buffer[32];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buffer;
}

std::optional<std::time_t> parse_time(const std::string& text) {
    if (text.size() != 20) return std::nullopt;
    std::tm tm{};
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    char tail = 0;
    if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &year, &month, &day, &hour, &minute, &second, &tail) !=
            7 ||
        tail != 'Z' || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return std::nullopt;
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    const std::time_t t = ::timegm(&tm);
    if (format_time(t) != text) return std::nullopt;  // rejects 02-31 and friends
    return t;
}

}  // namespace

const char* to_string(JournalEvent event) noexcept {
    for (const auto& [value, name] : event_names)
        if (value == event) return name;
    return "?";
}

std::optional<JournalEvent> parse_journal_event(std::string_view name) noexcept {
    for (const auto& [value, text] : event_names)
        if (name == text) return value;
    return std::nullopt;
}

std::string format_journal_line(const JournalRecord& record) {
    ordered_json line;
    line["time"] = format_time(record.time);
    line["event"] = to_string(record.event);
    line["generation"] = record.generation ? ordered_json(*record.generation) : ordered_json(nullptr);
    line["entry"] = record.entry;
    line["file"] = record.file;
    line["bootloader"] = record.bootloader;
    line["boot_id"] = record.boot_id;
    line["reason"] = record.reason;
    // Invalid UTF-8 in a reason (a file name from the ESP) must not make the
    // journal unwritable: replace it.
    return line.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

JournalRecord parse_journal_line(std::string_view text, std::string_view origin_view) {
    const std::string origin(origin_view);
    ordered_json line;
    try {
        line = ordered_json::parse(text);
    } catch (const ordered_json::exception& e) {
        // parse_error, and out_of_range for a number that overflows a double ("1e400").
        std::string message = e.what();
        if (const auto bracket = message.find("] "); bracket != std::string::npos) message.erase(0, bracket + 2);
        throw ParseError(origin + ": not JSON: " + message);
    }
    if (!line.is_object()) throw ParseError(origin + ": not a JSON object");
    auto required_string = [&](const char* key) -> std::string {
        const auto it = line.find(key);
        if (it == line.end()) throw ParseError(origin + ": missing \"" + key + "\"");
        if (!it->is_string()) throw ParseError(origin + ": \"" + key + "\" is not a string");
        return it->get<std::string>();
    };
    auto optional_string = [&](const char* key) -> std::string {
        const auto it = line.find(key);
        if (it == line.end() || it->is_null()) return "";
        if (!it->is_string()) throw ParseError(origin + ": \"" + key + "\" is not a string");
        return it->get<std::string>();
    };
    JournalRecord record;
    const std::string time = required_string("time");
    const auto parsed_time = parse_time(time);
    if (!parsed_time) throw ParseError(origin + ": \"time\" is not YYYY-MM-DDTHH:MM:SSZ: '" + time + "'");
    record.time = *parsed_time;
    const std::string event = required_string("event");
    const auto parsed_event = parse_journal_event(event);
    if (!parsed_event) throw ParseError(origin + ": unknown event '" + event + "'");
    record.event = *parsed_event;
    if (const auto it = line.find("generation"); it != line.end() && !it->is_null()) {
        if (!it->is_number_unsigned() || it->get<std::uint64_t>() > 0xffffffffull)
            throw ParseError(origin + ": \"generation\" is not a generation number");
        record.generation = it->get<unsigned>();
    }
    record.entry = optional_string("entry");
    record.file = optional_string("file");
    record.bootloader = optional_string("bootloader");
    record.boot_id = optional_string("boot_id");
    record.reason = optional_string("reason");
    return record;
}

void append_journal(const std::filesystem::path& state_dir, const JournalRecord& record) {
    const std::string line = format_journal_line(record) + "\n";
    RootDir root = RootDir::open_or_create(state_dir);
    std::string prefix;
    // A crash may have torn the last line: start this record on a fresh one.
    if (root.is_regular_file(journal_file)) {
        Fd fd = root.open_file(journal_file, O_RDONLY);
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) throw_errno("reading '" + root.display(journal_file).string() + "'");
        char last = '\n';
        if (st.st_size > 0 && ::pread(fd.get(), &last, 1, st.st_size - 1) != 1)
            throw_errno("reading '" + root.display(journal_file).string() + "'");
        if (last != '\n') prefix = "\n";
        fd.close(root.display(journal_file).c_str());
    }
    root.append(journal_file, prefix + line, Sync::yes);
}

std::optional<JournalRecord> last_journal_record(const std::filesystem::path& state_dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(state_dir, ec)) return std::nullopt;
    const RootDir root = RootDir::open(state_dir);
    if (!root.is_regular_file(journal_file)) return std::nullopt;
    const std::string shown = root.display(journal_file).string();
    Fd fd = root.open_file(journal_file, O_RDONLY);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("reading '" + shown + "'");
    // A record is a few hundred bytes: the last 64 KiB hold the last one.
    const off_t from = st.st_size > 65536 ? st.st_size - 65536 : 0;
    std::string tail(static_cast<std::size_t>(st.st_size - from), '\0');
    const ssize_t got = ::pread(fd.get(), tail.data(), tail.size(), from);
    if (got < 0) throw_errno("reading '" + shown + "'");
    tail.resize(static_cast<std::size_t>(got));
    // A torn last line (no newline) is skipped, as read_journal skips it.
    std::size_t end = tail.rfind('\n');
    while (end != std::string::npos) {
        const std::size_t begin = end == 0 ? std::string::npos : tail.rfind('\n', end - 1);
        const std::size_t start = begin == std::string::npos ? 0 : begin + 1;
        if (begin == std::string::npos && from > 0) return std::nullopt;  // a line longer than the tail
        const std::string_view line = std::string_view(tail).substr(start, end - start);
        if (!line.empty()) {
            try {
                return parse_journal_line(line, shown);
            } catch (const ParseError&) {
                return std::nullopt;
            }
        }
        end = begin;
    }
    return std::nullopt;
}

void check_journal_writable(const std::filesystem::path& state_dir) {
    RootDir root = RootDir::open_or_create(state_dir);
    Fd fd = root.open_file(journal_file, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("opening '" + root.display(journal_file).string() + "'");
    if (!S_ISREG(st.st_mode)) throw Error("'" + root.display(journal_file).string() + "' is not a regular file");
    fd.close(root.display(journal_file).c_str());
}

JournalContents read_journal(const std::filesystem::path& state_dir) {
    JournalContents contents;
    std::error_code ec;
    if (!std::filesystem::is_directory(state_dir, ec)) return contents;
    const RootDir root = RootDir::open(state_dir);
    const auto text = root.read(journal_file, max_journal_bytes);
    if (!text) return contents;
    const std::string shown = root.display(journal_file).string();
    unsigned line_no = 0;
    std::size_t pos = 0;
    while (pos < text->size()) {
        ++line_no;
        const std::size_t end = text->find('\n', pos);
        const bool torn = end == std::string::npos;
        const std::string_view line = std::string_view(*text).substr(pos, (torn ? text->size() : end) - pos);
        pos = torn ? text->size() : end + 1;
        if (line.empty()) continue;
        const std::string origin = shown + ":" + std::to_string(line_no);
        try {
            contents.records.push_back(parse_journal_line(line, origin));
        } catch (const ParseError& e) {
            contents.problems.push_back(JournalProblem{
                line_no, torn ? origin + ": torn last line (no newline), skipped" : std::string(e.what())});
        }
    }
    return contents;
}

std::string current_boot_id(const std::filesystem::path& source) {
    std::ifstream in(source);
    std::string id;
    if (!in || !std::getline(in, id)) throw Error("reading the boot id from '" + source.string() + "' failed");
    bool ok = id.size() == 36;
    for (std::size_t i = 0; ok && i < id.size(); ++i) {
        const char c = id[i];
        ok = (i == 8 || i == 13 || i == 18 || i == 23) ? c == '-' : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
    if (!ok) throw Error("'" + source.string() + "' does not hold a boot id: '" + id.substr(0, 64) + "'");
    return id;
}

std::time_t journal_now() noexcept { return std::time(nullptr); }

std::optional<JournalRecord> last_rollback(const std::vector<JournalRecord>& records) {
    std::optional<JournalRecord> out;
    std::set<std::string> armed;  // entries armed and not judged since
    for (const auto& r : records) {
        switch (r.event) {
            case JournalEvent::arm:
            case JournalEvent::live_start:
                armed.insert(r.entry);
                out.reset();
                break;
            case JournalEvent::adopt:
            case JournalEvent::good:
            case JournalEvent::promote:
            case JournalEvent::live_confirm:
                armed.erase(r.entry);
                out.reset();
                break;
            case JournalEvent::bad:
                if (armed.erase(r.entry) > 0) out = r;
                break;
            case JournalEvent::rollback:
                armed.erase(r.entry);
                out = r;
                break;
            case JournalEvent::live_revert:
                // A trial dropped before it was ever armed (no live-start) left nothing.
                if (armed.erase(r.entry) > 0 || (out && out->entry == r.entry)) out = r;
                break;
            case JournalEvent::install:
            case JournalEvent::boot:
            case JournalEvent::default_:
            case JournalEvent::gc: break;
        }
    }
    return out;
}

std::string describe_rollback(const JournalRecord& record) {
    const std::string gen = record.generation ? "generation " + std::to_string(*record.generation)
                                              : (record.entry.empty() ? std::string("a generation") : record.entry);
    const std::string what =
        record.event == JournalEvent::rollback ? "rolled back to " + gen : gen + " was rolled back";
    return what + " at " + format_time(record.time) + (record.reason.empty() ? "" : ": " + record.reason);
}

}  // namespace nixboot
