#include "boot/sdboot.hpp"

#include "boot/bls_entry.hpp"
#include "boot/efivars.hpp"
#include "boot/generations.hpp"
#include "boot/loader_conf.hpp"
#include "boot/uki.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"
#include "boot/util/sha256.hpp"

#include <spdlog/spdlog.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace nixboot {

namespace {

constexpr const char* entries_dir = "loader/entries";
constexpr const char* loader_conf_path = "loader/loader.conf";
constexpr const char* files_dir = "EFI/nixos";
constexpr const char* cache_name = "sdboot-files";
// What nixboot reads of one entry file; sync() never writes a larger one
// (bootspec bounds kernel parameters to keep real entries far below it).
constexpr std::size_t max_entry_size = 64 * 1024;

// loader.conf is rewritten in place (RootDir::overwrite_in_place) so that a
// power cut while the default moves cannot break its FAT cluster chain (seen
// in VM scenario 7 with rename-over). The text is padded to a fixed size
// with one comment line systemd-boot ignores; install pads an unpadded file
// ahead of the first promotion.
constexpr std::string_view loader_conf_pad = "#nixboot-padding: loader.conf is rewritten in place";
constexpr std::size_t loader_conf_size = 512;

std::string unpadded(std::string_view text) {
    std::string out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        const std::size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
        const std::string_view line = text.substr(pos, end - pos);
        if (!line.starts_with(loader_conf_pad)) out += line;
        pos = end;
    }
    return out;
}

// `text` plus the padding line: to `size` bytes when it fits, else to the
// next multiple of loader_conf_size with at least 64 bytes to spare.
std::string padded(std::string text, std::size_t size) {
    if (!text.empty() && text.back() != '\n') text += '\n';
    const std::size_t least = text.size() + loader_conf_pad.size() + 1;
    if (size < least) size = (least + 64 + loader_conf_size - 1) / loader_conf_size * loader_conf_size;
    std::string line(loader_conf_pad);
    line.resize(size - text.size() - 1, ' ');
    return text + line + "\n";
}

void write_loader_conf(RootDir& esp, const LoaderConf& conf) {
    const std::string text = unpadded(conf.format());
    std::size_t size = 0;
    if (const auto st = esp.lstat(loader_conf_path); st && S_ISREG(st->st_mode))
        size = static_cast<std::size_t>(st->st_size);
    const std::string out = padded(text, size);
    if (!esp.overwrite_in_place(loader_conf_path, out, Sync::yes)) {
        esp.mkdirs("loader");
        esp.write_atomic(loader_conf_path, out, Sync::yes);
    }
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string q(std::string_view s) { return "'" + std::string(s) + "'"; }

bool is_valid_version_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '~' || c == '-' || c == '^' || c == '.';
}

template <typename T>
int cmp(const T& a, const T& b) {
    return a < b ? -1 : (b < a ? 1 : 0);
}

}  // namespace

// ---- pure functions ----------------------------------------------------------

std::string content_file_name(std::string_view hex, std::string_view kind) {
    return std::string(files_dir) + "/" + std::string(hex.substr(0, 32)) + "-" + std::string(kind) + ".efi";
}

std::optional<unsigned> systemd_boot_version(std::string_view info) {
    constexpr std::string_view prefix = "systemd-boot ";
    if (!info.starts_with(prefix)) return std::nullopt;
    info.remove_prefix(prefix.size());
    unsigned v = 0;
    std::size_t i = 0;
    for (; i < info.size() && i < 6 && std::isdigit(static_cast<unsigned char>(info[i])); ++i)
        v = v * 10 + static_cast<unsigned>(info[i] - '0');
    if (i == 0) return std::nullopt;
    return v;
}

IdScheme id_scheme_for(std::string_view info) {
    auto v = systemd_boot_version(info);
    return v && *v >= 258 ? IdScheme::without_counter : IdScheme::with_counter;
}

std::string loader_entry_id(std::string_view file_name, IdScheme scheme) {
    if (scheme == IdScheme::without_counter) {
        if (auto n = try_parse_entry_name(file_name)) {
            n->counter.reset();
            return lower(format_entry_name(*n));
        }
    }
    return lower(file_name);
}

std::string sort_item_id(const SortItem& item, IdScheme scheme) {
    return loader_entry_id(item.file_name, scheme) + lower(item.id_suffix);
}

std::string_view loader_value(std::string_view value) {
    if (!value.empty() && value.front() == '"' && value.back() == '"') {
        if (value.size() == 1) return {};
        return value.substr(1, value.size() - 2);
    }
    return value;
}

std::string one_shot_pattern(std::string_view file_name) {
    const auto n = parse_entry_name(file_name);
    std::string out;
    for (const char c : lower(n.stem)) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
        out += c;
    }
    return out + "[+.]*conf";
}

bool efi_fnmatch(std::string_view p, std::string_view t) {
    // Iterative glob with single-star backtracking, like systemd's efi_fnmatch
    // (src/fundamental/efi-string.c, 252 to 262): '*', '?', '\\' escapes and
    // sets with ranges; a set has no negation ('!' and '^' in it are plain
    // characters), ']' first in a set is a plain character.
    std::size_t pi = 0, ti = 0, star_p = std::string_view::npos, star_t = 0;
    auto match_one = [&](std::size_t& pp, char c) -> std::optional<bool> {
        // Returns nullopt on a malformed class; advances pp past the token.
        char pc = p[pp];
        if (pc == '?') {
            ++pp;
            return true;
        }
        if (pc == '\\' && pp + 1 < p.size()) {
            pp += 2;
            return p[pp - 1] == c;
        }
        if (pc == '[') {
            std::size_t q = pp + 1;
            bool hit = false, first = true;
            while (q < p.size() && (first || p[q] != ']')) {
                first = false;
                char lo = p[q];
                if (lo == '\\' && q + 1 < p.size()) lo = p[++q];
                char hi = lo;
                if (q + 2 < p.size() && p[q + 1] == '-' && p[q + 2] != ']') {
                    hi = p[q + 2];
                    q += 2;
                }
                if (c >= lo && c <= hi) hit = true;
                ++q;
            }
            if (q >= p.size()) return std::nullopt;
            pp = q + 1;
            return hit;
        }
        ++pp;
        return pc == c;
    };
    while (ti < t.size()) {
        if (pi < p.size() && p[pi] == '*') {
            star_p = ++pi;
            star_t = ti;
            continue;
        }
        if (pi < p.size()) {
            std::size_t pp = pi;
            auto r = match_one(pp, t[ti]);
            if (!r) return false;
            if (*r) {
                pi = pp;
                ++ti;
                continue;
            }
        }
        if (star_p == std::string_view::npos) return false;
        pi = star_p;
        ti = ++star_t;
    }
    while (pi < p.size() && p[pi] == '*') ++pi;
    return pi == p.size();
}

int strverscmp_improved(std::string_view as, std::string_view bs) {
    if (as.empty() || bs.empty()) return cmp(as, bs);
    std::string A(as), B(bs);
    const char* a = A.c_str();
    const char* b = B.c_str();
    auto isdig = [](char c) { return c >= '0' && c <= '9'; };
    auto isalp = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    for (;;) {
        while (*a && !is_valid_version_char(*a)) a++;
        while (*b && !is_valid_version_char(*b)) b++;
        int r;
        if (*a == '~' || *b == '~') {
            r = cmp(*a != '~', *b != '~');
            if (r) return r;
            a++;
            b++;
        }
        if (*a == '\0' || *b == '\0') {
            int s = std::strcmp(a, b);
            return s < 0 ? -1 : (s > 0 ? 1 : 0);
        }
        if (*a == '-' || *b == '-') {
            r = cmp(*a != '-', *b != '-');
            if (r) return r;
            a++;
            b++;
        }
        if (*a == '^' || *b == '^') {
            r = cmp(*a != '^', *b != '^');
            if (r) return r;
            a++;
            b++;
        }
        if (*a == '.' || *b == '.') {
            r = cmp(*a != '.', *b != '.');
            if (r) return r;
            a++;
            b++;
        }
        const char *aa, *bb;
        if (isdig(*a) || isdig(*b)) {
            for (aa = a; isdig(*aa); aa++) {}
            for (bb = b; isdig(*bb); bb++) {}
            r = cmp(a != aa, b != bb);
            if (r) return r;
            while (*a == '0') a++;
            while (*b == '0') b++;
            r = cmp(aa - a, bb - b);
            if (r) return r;
            r = std::strncmp(a, b, static_cast<std::size_t>(aa - a));
            if (r) return r < 0 ? -1 : 1;
        } else {
            for (aa = a; isalp(*aa); aa++) {}
            for (bb = b; isalp(*bb); bb++) {}
            r = std::strncmp(a, b, static_cast<std::size_t>(std::min(aa - a, bb - b)));
            if (r) return r < 0 ? -1 : 1;
            r = cmp(aa - a, bb - b);
            if (r) return r;
        }
        a = aa;
        b = bb;
    }
}

void sort_like_systemd_boot(std::vector<SortItem>& items, IdScheme scheme) {
    // Decorate with the loader IDs once instead of in every comparison.
    std::vector<std::pair<std::string, SortItem>> decorated;
    decorated.reserve(items.size());
    for (auto& it : items) decorated.emplace_back(sort_item_id(it, scheme), std::move(it));
    auto spent = [](const SortItem& i) { return i.counter && i.counter->left == 0; };
    std::stable_sort(decorated.begin(), decorated.end(), [&](const auto& dx, const auto& dy) {
        const SortItem& x = dx.second;
        const SortItem& y = dy.second;
        auto compare = [&]() -> int {
            int r = cmp(spent(x), spent(y));
            if (r) return r;
            r = cmp(!x.sort_key, !y.sort_key);
            if (r) return r;
            if (x.sort_key && y.sort_key) {
                r = x.sort_key->compare(*y.sort_key);
                if (r) return r < 0 ? -1 : 1;
                r = x.machine_id.value_or("").compare(y.machine_id.value_or(""));
                if (r) return r < 0 ? -1 : 1;
                r = -strverscmp_improved(x.version.value_or(""), y.version.value_or(""));
                if (r) return r;
            }
            r = -strverscmp_improved(dx.first, dy.first);
            if (r) return r;
            if (!x.counter || !y.counter) return 0;
            r = -cmp(x.counter->left, y.counter->left);
            if (r) return r;
            return cmp(x.counter->done, y.counter->done);
        };
        return compare() < 0;
    });
    for (std::size_t i = 0; i < items.size(); ++i) items[i] = std::move(decorated[i].second);
}

std::optional<std::size_t> pick_default_entry(const std::vector<SortItem>& sorted, const DefaultInputs& in,
                                              IdScheme scheme) {
    if (sorted.empty()) return std::nullopt;
    enum class Bad { may_match, skipped };
    auto find = [&](const std::optional<std::string>& pattern, Bad bad) -> std::optional<std::size_t> {
        if (!pattern || pattern->empty()) return std::nullopt;
        auto pat = lower(*pattern);
        for (std::size_t i = 0; i < sorted.size(); ++i) {
            if (bad == Bad::skipped && sorted[i].counter && sorted[i].counter->left == 0) continue;
            if (efi_fnmatch(pat, sort_item_id(sorted[i], scheme))) return i;
        }
        return std::nullopt;
    };
    // `preferred` (systemd 260, docs/BOOT_LOADER_INTERFACE.md "LoaderEntryPreferred":
    // "takes boot assessment into account by not selecting boot entries that have
    // been marked as bad"; without a match the loader looks at the default, which
    // does not skip them). Checked against 262.1 in VM scenario systemd-boot-sid:10.
    if (auto i = find(in.one_shot, Bad::may_match)) return i;
    if (auto i = find(in.efi_preferred, Bad::skipped)) return i;
    if (auto i = find(in.conf_preferred, Bad::skipped)) return i;
    // "@saved" (src/boot/boot.c config_default_entry_select, 252 to 262): the
    // entry booted last (LoaderEntryLastBooted) in place of the default it
    // stands in; the EFI variable's @saved is looked up once, before the
    // loader.conf default, which it then replaces. Another "@..." in
    // loader.conf is refused by the loader ("Unsupported special entry
    // identifier") and matches nothing here either.
    auto is_saved = [](const std::optional<std::string>& v) { return v && lower(*v) == "@saved"; };
    const bool efi_saved = is_saved(in.efi_default);
    if (auto i = find(efi_saved ? in.last_booted : in.efi_default, Bad::may_match)) return i;
    if (efi_saved) return std::size_t{0};
    if (auto i = find(is_saved(in.conf_default) ? in.last_booted : in.conf_default, Bad::may_match)) return i;
    return std::size_t{0};
}

std::string format_generation_entry(const Generation& g, std::string_view spec, const EntryFiles& files) {
    const BootSpec* bs = &g.doc.boot;
    if (!spec.empty()) {
        auto it = g.doc.specialisations.find(std::string(spec));
        if (it == g.doc.specialisations.end())
            throw Error("generation " + std::to_string(g.number) + " has no specialisation " + q(spec));
        bs = &it->second;
    }
    char date[32] = "1970-01-01";
    std::tm tm{};
    std::time_t t = g.time;
    if (gmtime_r(&t, &tm)) std::strftime(date, sizeof date, "%Y-%m-%d", &tm);
    BlsEntry e;
    e.title = spec.empty() ? std::string("NixOS") : "NixOS (" + std::string(spec) + ")";
    std::string label = bs->label.empty() ? "NixOS " + g.nixos_version : bs->label;
    e.version = "Generation " + std::to_string(g.number) + " " + label + ", Built on " + date;
    e.sort_key = bs->sort_key.value_or("nixos");
    e.kernel = files.kernel;
    if (files.initrd) e.initrds.push_back(*files.initrd);
    std::string options = "init=" + bs->toplevel + "/init";
    for (const auto& p : bs->kernel_params) options += " " + p;
    options += " nixboot.entry=" + entry_id(g.number, spec);
    e.options = options;
    return format_bls_entry(e);
}

// ---- the backend ---------------------------------------------------------------

struct SdBootBackend::Scanned {
    struct File {
        std::string file_name;
        EntryName name;
        std::string text;
        std::optional<BlsEntry> bls;  // nullopt: did not parse (reported)
        std::optional<ParsedEntryId> ours;
        bool unreadable = false;  // too large or not a regular file (reported); text empty
        std::string unbootable;   // why the loader skips it; empty if it shows it
        bool stale = false;       // the old name of a torn rename: another name holds the entry
        // Not in the ESP's loader/entries (see SortItem::origin): never ours,
        // never in by_stem; a UKI's entries carry what the loader read of it.
        std::string origin;
        std::optional<UkiEntry> uki;
    };
    std::string loader_info;
    std::set<std::string> quirky_vars;  // read as the loader reads them, which is not as written
    IdScheme scheme = IdScheme::with_counter;
    bool vars_writable = false;
    bool oneshot_supported = true;
    bool preferred_supported = false;                         // LoaderFeatures has `preferred` (systemd-boot 260+)
    std::vector<File> files;                                  // every parsed .conf name, then the others
    std::map<std::string, std::vector<std::size_t>> by_stem;  // the name holding the entry first
    std::set<std::string> duplicate_stems;                    // entries with more than one name (torn renames)
    std::map<std::string, std::string> torn_fix;              // stem -> the names and how to split them
    std::vector<std::string> warnings;
    std::optional<std::string> one_shot, efi_default, efi_preferred;
    std::optional<std::string> last_booted;  // LoaderEntryLastBooted: what "@saved" stands for
    std::vector<std::string> blocking;       // unreadable deciding variables, with the fix
    LoaderConf conf = LoaderConf::parse("", loader_conf_path);
    std::optional<std::string> boot_count_file;  // relative to the ESP
    std::optional<std::string> selected;
    std::vector<SortItem> sorted;
    std::vector<std::size_t> order;  // sorted[i] is files[order[i]]

    // A loader.conf value as systemd-boot reads it (loader_value).
    std::optional<std::string> conf_value(std::string_view key) const {
        auto v = conf.get(key);
        if (v) *v = std::string(loader_value(*v));
        return v;
    }
    // The entry LoaderEntryPreferred arms as nixboot's trial: one of nixboot's
    // entries with tries left whose one-shot pattern is exactly the variable.
    const File* preferred_trial() const {
        if (!efi_preferred) return nullptr;
        for (const auto& f : files)
            if (f.ours && counter_state(f.name) == CounterState::trying &&
                one_shot_pattern(f.file_name) == *efi_preferred)
                return &f;
        return nullptr;
    }
    // What the loader takes into its choice: `preferred` only where it has it.
    DefaultInputs persistent_inputs() const {
        DefaultInputs in;
        if (preferred_supported) {
            in.efi_preferred = efi_preferred;
            in.conf_preferred = conf_value("preferred");
        }
        in.efi_default = efi_default;
        in.conf_default = conf_value("default");
        in.last_booted = last_booted;
        return in;
    }

    // The file that holds entry `id` (of a torn rename's names, the one
    // torn_rename_survivor picks); nullptr if there is none.
    const File* find(std::string_view id) const {
        auto it = by_stem.find(std::string(id));
        if (it == by_stem.end()) return nullptr;
        return &files[it->second.front()];
    }
};

namespace {

// Why systemd-boot leaves an entry file out of its menu, or "": it needs a
// `linux` or `efi` line whose file exists (systemd v252 src/boot/efi/boot.c,
// config_entry_add_type1: LOADER_UNDEFINED entries and a failed "check
// existence" Open() are dropped). A power cut during a rename on FAT can leave
// the new name empty (vfat writes the new directory entry before the inode's
// cluster and size), so an entry that skipped must never become the default.
// `present` remembers each kernel's answer for one scan (entries share kernels).
std::string unbootable_reason(const RootDir& esp, const std::optional<BlsEntry>& bls,
                              std::map<std::string, bool>& present) {
    if (!bls) return "it does not parse";
    std::optional<std::string> image = bls->kernel;
    for (const auto& [key, value] : bls->other)
        if (!image && key == "efi") image = value;
    if (!image) return "it has no 'linux' or 'efi' line";
    std::string rel = *image;
    while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
    auto [it, fresh] = present.emplace(rel, false);
    if (fresh) {
        try {
            it->second = esp.is_regular_file(rel);
        } catch (const Error&) {}
    }
    if (it->second) return "";
    return "its kernel '" + *image + "' is missing";
}

}  // namespace

// One entry with several file names (`idx` into s.files). systemd-boot renames
// a counted entry as it boots it (src/boot/boot.c config_entry_bump_counters,
// systemd 252 to 262: SetInfo with the new name), and on FAT a power cut in
// that rename can leave the new directory entry and the old one, both pointing
// at ONE cluster chain. The loader then shows both names as entries (the one
// with no tries left sorts last), and systemd-bless-boot renames only the file
// LoaderBootCountPath names (src/bless-boot/bless-boot.c, 252 to 262). Unlinking
// or rewriting either name through Linux vfat frees the shared chain, which
// corrupts the other name or later fails with EIO and a read-only remount. So
// the names are read as one entry, held by the name torn_rename_survivor picks;
// the others are stale: never the default, never renamed, removed or
// rewritten. The way out is fsck.fat, which splits the names.
void SdBootBackend::settle_torn_rename(Scanned& s, const std::string& stem, std::vector<std::size_t>& idx,
                                       const RootDir& esp) {
    std::vector<EntryFile> names;
    for (auto i : idx) names.push_back(EntryFile{s.files[i].file_name, s.files[i].name});
    std::string counted;
    if (s.boot_count_file) counted = s.boot_count_file->substr(std::string(entries_dir).size() + 1);
    const std::size_t keep = torn_rename_survivor(names, counted);
    std::rotate(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(keep),
                idx.begin() + static_cast<std::ptrdiff_t>(keep) + 1);
    std::string list = s.files[idx.front()].file_name + " (read as the entry)";
    std::string stale;
    for (std::size_t k = 1; k < idx.size(); ++k) {
        s.files[idx[k]].stale = true;
        list += ", " + s.files[idx[k]].file_name + " (stale)";
        stale += (stale.empty() ? "" : " and ") + s.files[idx[k]].file_name;
    }
    s.duplicate_stems.insert(stem);
    s.torn_fix[stem] =
        "entry " + q(stem) + " has " + std::to_string(idx.size()) + " file names in " +
        esp.display(entries_dir).string() + ", as a rename cut short leaves them: " + list +
        "; on FAT they can share one cluster chain, so nixboot removes and rewrites neither: unmount the ESP, run "
        "'fsck.fat -a' on its device (it empties one of the names, which splits them), mount it, remove " +
        stale + " and run 'nixboot install'";
    s.warnings.push_back(s.torn_fix[stem]);
}

SdBootBackend::SdBootBackend(const BackendOptions& opts) : opts_(opts) {}

std::shared_ptr<const SdBootBackend::Scanned> SdBootBackend::scan_for_change() const {
    auto s = scan();
    if (!s->blocking.empty()) throw Error(s->blocking.front());
    return s;
}

// What a held reading keeps: the whole scan until the backend changes
// something, and each entry's text and parse by the file's identity (name,
// inode, size, mtime, ctime), which nixboot's own writes always change (a new
// file renamed into place) and which outlives the backend's changes.
struct SdBootBackend::EntryText {
    std::string text;
    std::optional<BlsEntry> bls;
    std::string parse_error;  // the warning when bls is nullopt
};

struct SdBootBackend::Held {
    struct Text {
        struct stat identity {};
        EntryText entry;
    };
    std::shared_ptr<const Scanned> scanned;
    std::map<std::string, Text> texts;  // by file name

    static bool same(const struct stat& a, const struct stat& b) {
        return a.st_ino == b.st_ino && a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
               a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
               a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
    }
};

std::optional<SdBootBackend::EntryText> SdBootBackend::read_entry(const RootDir& entries,
                                                                  const std::string& name) const {
    struct stat before {};
    bool regular = false;
    if (held_ && ::fstatat(entries.fd(), name.c_str(), &before, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(before.st_mode)) {
        regular = true;
        auto it = held_->texts.find(name);
        if (it != held_->texts.end() && Held::same(it->second.identity, before)) return it->second.entry;
    }
    auto text = entries.read(name, max_entry_size);
    if (!text) return std::nullopt;
    EntryText e;
    e.text = std::move(*text);
    try {
        e.bls = parse_bls_entry(e.text, entries.display(name).string());
    } catch (const Error& err) {
        e.parse_error = err.what();
    }
    // Remembered only when the identity after the read is the one before: a
    // file that changed while it was read is read again next time.
    struct stat after {};
    if (regular && ::fstatat(entries.fd(), name.c_str(), &after, AT_SYMLINK_NOFOLLOW) == 0 && Held::same(before, after))
        held_->texts[name] = Held::Text{before, e};
    return e;
}

SdBootBackend::Forget::~Forget() {
    if (backend.held_) backend.held_->scanned.reset();
}

void SdBootBackend::hold_reads(bool held) const {
    if (held) {
        if (holds_++ == 0) held_ = std::make_shared<Held>();
    } else if (--holds_ == 0) {
        held_.reset();
    }
}

std::shared_ptr<const SdBootBackend::Scanned> SdBootBackend::scan() const {
    if (held_ && held_->scanned) return held_->scanned;
    auto s = std::make_shared<const Scanned>(scan_now());
    if (held_) held_->scanned = s;
    return s;
}

void SdBootBackend::add_type2_entries(Scanned& s, const RootDir& root) {
    // systemd-boot boot.c config_load_type2_entries (252-262): regular files
    // in \EFI\Linux whose names end in ".efi" (any case), not hidden, not
    // "auto-*"; each UKI gives one entry per profile (boot_entry_add_type2).
    constexpr std::string_view dir = "EFI/Linux";
    for (const auto& name : root.list(dir)) {
        const std::string low = lower(name);
        if (name.front() == '.' || !low.ends_with(".efi") || low.starts_with("auto-")) continue;
        const std::string rel = std::string(dir) + "/" + name;
        const std::string shown = root.display(rel).string();
        std::vector<UkiEntry> entries;
        try {
            if (!root.is_regular_file(rel)) continue;
            auto fd = root.open_file(rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
            entries = read_uki_entries(fd.get(), shown);
        } catch (const Error& e) {
            s.warnings.push_back(e.what());
            continue;
        }
        Scanned::File base;
        base.file_name = name;
        if (auto n = try_parse_entry_name(name))
            base.name = *n;
        else
            base.name = EntryName{name.substr(0, name.size() - 4), std::nullopt, name.substr(name.size() - 4)};
        base.origin = root.display(dir).string();
        for (auto& e : entries) {
            Scanned::File f = base;
            f.uki = std::move(e);
            s.files.push_back(std::move(f));
        }
    }
}

void SdBootBackend::add_foreign_type1_entries(Scanned& s, const RootDir& root) {
    auto names = root.list(entries_dir);
    if (names.empty()) return;
    auto scanned = scan_entry_names(names, ".conf");
    auto entries = root.subdir(entries_dir);
    if (!entries) return;
    std::map<std::string, bool> kernels;
    for (auto& ef : scanned.entries) {
        Scanned::File f;
        f.file_name = ef.file_name;
        f.name = ef.name;
        f.origin = root.display(entries_dir).string();
        const std::string shown = entries->display(ef.file_name).string();
        try {
            auto text = entries->read(ef.file_name, max_entry_size);
            if (!text) continue;
            f.bls = parse_bls_entry(*text, shown);
        } catch (const Error& e) {
            s.warnings.push_back(std::string(e.what()) + " (the loader skips it)");
            continue;
        }
        // Its kernel lives on its own partition.
        f.unbootable = unbootable_reason(root, f.bls, kernels);
        if (!f.unbootable.empty()) s.warnings.push_back(shown + ": " + f.unbootable + ", so the loader skips it");
        s.files.push_back(std::move(f));
    }
}

SdBootBackend::Scanned SdBootBackend::scan_now() const {
    Scanned s;
    auto esp = RootDir::open(opts_.esp);
    EfiVars vars(opts_.efivars);

    // EFI variables: informational ones degrade to warnings, the ones that
    // decide what boots must be readable.
    auto soft = [&](const char* name) -> std::optional<std::string> {
        try {
            return vars.get_string(name);
        } catch (const Error& e) {
            s.warnings.push_back(std::string(e.what()) + " (ignored)");
            return std::nullopt;
        }
    };
    s.loader_info = soft(efivar_name::loader_info).value_or("");
    s.scheme = id_scheme_for(s.loader_info);
    if (!s.loader_info.empty() && !systemd_boot_version(s.loader_info))
        s.warnings.push_back("LoaderInfo " + q(s.loader_info) +
                             " is not systemd-boot; assuming entry IDs with counters");
    s.vars_writable = vars.writable() == Writable::yes;
    try {
        if (auto f = vars.get_u64(efivar_name::loader_features)) {
            s.oneshot_supported = (*f & loader_feature::entry_oneshot) != 0;
            s.preferred_supported = (*f & loader_feature::preferred) != 0;
        }
    } catch (const Error& e) {
        s.warnings.push_back(std::string(e.what()) + " (ignored)");
    }
    // The variables that decide what boots: one nixboot cannot read leaves it
    // unable to say what the loader does, so it changes nothing; status still
    // shows everything else, with the way out.
    auto deciding = [&](const char* name) -> std::optional<std::string> {
        try {
            std::string quirk;
            auto value = vars.get_loader_string(name, &quirk);
            if (!quirk.empty()) {
                s.warnings.push_back(quirk + " (nixboot replaces it when it next arms or sets the default)");
                s.quirky_vars.insert(name);
            }
            return value;
        } catch (const Error& e) {
            auto file = vars.file_of(name).string();
            s.blocking.push_back(std::string(e.what()) +
                                 "; nixboot changes nothing while it is there: remove it with 'chattr -i " + file +
                                 " && rm " + file + "'");
            s.warnings.push_back(s.blocking.back());
            return std::nullopt;
        }
    };
    s.one_shot = deciding(efivar_name::loader_entry_oneshot);
    s.efi_default = deciding(efivar_name::loader_entry_default);
    s.efi_preferred = deciding(efivar_name::loader_entry_preferred);
    s.last_booted = soft(efivar_name::loader_entry_last_booted);
    if (auto p = soft(efivar_name::loader_boot_count_path)) {
        constexpr std::string_view prefix = "\\loader\\entries\\";
        std::string_view v(*p);
        bool ok = v.starts_with(prefix) && v.size() > prefix.size();
        std::string_view name = ok ? v.substr(prefix.size()) : v;
        if (ok && (name.find('\\') != std::string_view::npos || name.find('/') != std::string_view::npos ||
                   name == "." || name == ".."))
            ok = false;
        if (ok) {
            auto n = try_parse_entry_name(name);
            ok = n && n->counter && n->suffix == ".conf";
        }
        if (ok)
            s.boot_count_file = std::string(entries_dir) + "/" + std::string(name);
        else
            s.warnings.push_back("EFI variable LoaderBootCountPath " + q(*p) +
                                 " does not name a counted entry under \\loader\\entries\\ (ignored)");
    }
    s.selected = soft(efivar_name::loader_entry_selected);

    if (auto text = esp.read(loader_conf_path, 64 * 1024))
        s.conf = LoaderConf::parse(*text, esp.display(loader_conf_path).string());

    auto names = esp.list(entries_dir);
    auto scanned = scan_entry_names(names, ".conf");
    // One directory fd for every entry: one openat each, not one per component.
    auto entries = names.empty() ? std::nullopt : esp.subdir(entries_dir);
    std::map<std::string, bool> kernels;
    for (const auto& r : scanned.rejected)
        s.warnings.push_back(esp.display(std::string(entries_dir) + "/" + r.file_name).string() + ": " + r.reason +
                             " (left alone)");
    for (auto& ef : scanned.entries) {
        Scanned::File f;
        f.file_name = ef.file_name;
        f.name = ef.name;
        std::string rel = std::string(entries_dir) + "/" + ef.file_name;
        // One unreadable entry (oversized, a FIFO, a symlink) must not stop the
        // other verbs: it is reported and kept by name, so sync() rewrites a
        // nixboot entry in place and nothing else touches its text.
        try {
            auto e = entries ? read_entry(*entries, ef.file_name) : std::nullopt;
            if (!e) continue;  // vanished (or a dangling name): nothing to boot
            f.text = std::move(e->text);
            f.bls = std::move(e->bls);
            if (!f.bls) s.warnings.push_back(e->parse_error);
        } catch (const Error& e) {
            s.warnings.push_back(std::string(e.what()) + " (entry skipped)");
            f.unreadable = true;
        }
        f.unbootable = f.unreadable ? "it cannot be read" : unbootable_reason(esp, f.bls, kernels);
        if (f.bls && !f.unbootable.empty())  // unreadable and unparsable entries were reported above
            s.warnings.push_back(esp.display(rel).string() + ": " + f.unbootable +
                                 ", so the loader skips it (`nixboot install` rewrites nixboot's entries)");
        // nixboot writes ".conf" only: an "X.CONF" is never one of its own.
        if (f.name.suffix == ".conf") f.ours = parse_entry_id(f.name.stem);
        s.by_stem[f.name.stem].push_back(s.files.size());
        s.files.push_back(std::move(f));
    }
    for (auto& [stem, idx] : s.by_stem)
        if (idx.size() > 1) settle_torn_rename(s, stem, idx, esp);
    // What else the loader sorts in with them (systemd-boot 252-262 boot.c,
    // config_load_all_entries): Type #2 UKIs in the ESP's EFI/Linux, and the
    // Type #1 entries and UKIs of the XBOOTLDR partition.
    add_type2_entries(s, esp);
    if (opts_.xbootldr) {
        auto xbootldr = RootDir::open(*opts_.xbootldr);
        // The ESP named twice (bootctl takes XBOOTLDR == ESP as no XBOOTLDR):
        // its entries are read once.
        struct stat a {};
        struct stat b {};
        const bool same = ::fstat(esp.fd(), &a) == 0 && ::fstat(xbootldr.fd(), &b) == 0 && a.st_dev == b.st_dev &&
                          a.st_ino == b.st_ino;
        if (!same) {
            add_foreign_type1_entries(s, xbootldr);
            add_type2_entries(s, xbootldr);
        }
    }

    std::vector<std::pair<SortItem, std::size_t>> items;
    for (std::size_t i = 0; i < s.files.size(); ++i) {
        const auto& f = s.files[i];
        SortItem it;
        it.file_name = f.file_name;
        it.counter = f.name.counter;
        it.origin = f.origin;
        if (f.uki) {
            it.sort_key = f.uki->sort_key;
            it.version = f.uki->version;
            it.id_suffix = f.uki->id_suffix;
        } else if (f.bls) {
            auto loader_reads = [](const std::optional<std::string>& v) -> std::optional<std::string> {
                if (!v) return v;
                return std::string(loader_value(*v));
            };
            it.sort_key = loader_reads(f.bls->sort_key);
            it.machine_id = loader_reads(f.bls->machine_id);
            it.version = loader_reads(f.bls->version);
        }
        s.sorted.push_back(it);
    }
    // Sort indices along with items.
    std::vector<std::size_t> idx(s.sorted.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    {
        std::vector<SortItem> tagged = s.sorted;
        // stable sort of a copy, then map back to indices (a file name is
        // unique in its directory, a profile in its UKI)
        sort_like_systemd_boot(tagged, s.scheme);
        auto key = [](const SortItem& i) { return i.origin + '\0' + i.file_name + '\0' + i.id_suffix; };
        std::map<std::string, std::size_t> pos;
        for (std::size_t i = 0; i < s.sorted.size(); ++i) pos[key(s.sorted[i])] = i;
        s.order.clear();
        for (const auto& t : tagged) s.order.push_back(pos.at(key(t)));
        s.sorted = std::move(tagged);
    }
    return s;
}

namespace {

Entry to_entry(const SdBootBackend* /*unused*/, const std::string& file_name, const EntryName& name,
               const ParsedEntryId& pid, const std::optional<BlsEntry>& bls, bool bootable) {
    Entry e;
    e.bootable = bootable;
    e.id = name.stem;
    e.generation = pid.generation;
    e.specialisation = pid.specialisation;
    switch (counter_state(name)) {
        case CounterState::good: e.state = EntryState::good; break;
        case CounterState::trying: e.state = EntryState::trial; break;
        case CounterState::bad: e.state = EntryState::bad; break;
    }
    if (name.counter) {
        e.tries_left = name.counter->left;
        e.tries_done = name.counter->done;
    }
    e.file = std::string(entries_dir) + "/" + file_name;
    if (bls) {
        e.title = bls->title.value_or("");
        e.version = bls->version.value_or("");
    }
    return e;
}

std::string id_of_sorted(const SortItem& item) {
    if (auto n = try_parse_entry_name(item.file_name)) return n->stem + item.id_suffix;
    return item.file_name + item.id_suffix;
}

}  // namespace

LoaderView SdBootBackend::read() const {
    const auto scanned = scan();
    const Scanned& s = *scanned;
    LoaderView v;
    v.bootloader = Bootloader::systemd_boot;
    v.loader_info = s.loader_info;
    v.vars_writable = s.vars_writable;
    v.warnings = s.warnings;
    v.blocking = s.blocking;
    for (std::size_t k = 0; k < s.order.size(); ++k) {
        const auto& f = s.files[s.order[k]];
        if (f.ours && !f.stale)
            v.entries.push_back(to_entry(this, f.file_name, f.name, *f.ours, f.bls, f.unbootable.empty()));
    }
    if (s.boot_count_file) {
        v.booted_file = s.boot_count_file;
        v.booted = parse_entry_name(s.boot_count_file->substr(std::string(entries_dir).size() + 1)).stem;
    } else if (s.selected) {
        if (auto n = try_parse_entry_name(*s.selected)) v.booted = n->stem;
    }
    // systemd-boot lowercases entry IDs (v252 boot.c config_entry_add_type1,
    // strtolower16), so LoaderEntrySelected names a specialisation "Foo" as
    // "...-specialisation-foo": the booted entry is matched ignoring case.
    if (v.booted && !v.find(*v.booted)) {
        const auto want = lower(*v.booted);
        for (const auto& e : v.entries)
            if (lower(e.id) == want) {
                v.booted = e.id;
                break;
            }
    }
    // The loader chooses among the entries it shows.
    std::vector<SortItem> shown;
    for (std::size_t k = 0; k < s.order.size(); ++k)
        if (s.files[s.order[k]].unbootable.empty()) shown.push_back(s.sorted[k]);
    // A preferred entry nixboot armed is a trial, not the persistent default:
    // that is what the loader boots once the trial is spent (or decided).
    const Scanned::File* preferred_trial = s.preferred_supported ? s.preferred_trial() : nullptr;
    DefaultInputs in = s.persistent_inputs();
    if (preferred_trial) in.efi_preferred.reset();
    if (auto i = pick_default_entry(shown, in, s.scheme)) v.persistent_default = id_of_sorted(shown[*i]);
    v.default_pinned = s.efi_default || s.conf.get("default");
    in = s.persistent_inputs();
    in.one_shot = s.one_shot;
    if (auto i = pick_default_entry(shown, in, s.scheme)) v.next_boot = id_of_sorted(shown[*i]);
    if (!s.preferred_supported && (s.efi_preferred || s.conf.get("preferred")))
        v.warnings.push_back(std::string(s.efi_preferred ? "EFI variable LoaderEntryPreferred " + q(*s.efi_preferred)
                                                         : "loader.conf 'preferred " + *s.conf.get("preferred") + "'") +
                             " is ignored by this loader (no 'preferred' in LoaderFeatures: systemd-boot before 260) "
                             "but a newer one would honour it; nixboot removes it when it next sets the default");
    if (s.one_shot) {
        in = {};
        in.one_shot = s.one_shot;
        bool matched = false;
        for (std::size_t i = 0; i < s.sorted.size(); ++i)
            if (efi_fnmatch(lower(*s.one_shot), sort_item_id(s.sorted[i], s.scheme))) {
                v.armed = id_of_sorted(s.sorted[i]);
                v.armed_mode = ArmMode::one_shot;
                matched = true;
                break;
            }
        if (!matched)
            v.warnings.push_back("EFI variable LoaderEntryOneShot " + q(*s.one_shot) +
                                 " matches no entry (the loader will ignore it)");
    } else if (preferred_trial) {
        v.armed = preferred_trial->name.stem;
        v.armed_mode = ArmMode::preferred;
    } else if (!s.efi_default && !s.conf.get("default") && !s.sorted.empty()) {
        // A trial with a torn twin is not a sort-order arm nixboot keeps: the
        // loader cannot rename the stale name onto the existing one, so it
        // would boot it without counting (G2); the next change pins the default.
        const auto& first = s.files[s.order.front()];
        if (first.ours && !s.duplicate_stems.count(first.name.stem) &&
            counter_state(first.name) == CounterState::trying) {
            v.armed = first.name.stem;
            v.armed_mode = ArmMode::sort_order;
        }
    }
    return v;
}

namespace {

// Cache of kernels/initrds already copied: source path -> content name, keyed
// by what stat says so unchanged store files are never hashed twice.
struct FileCache {
    struct Row {
        std::string name;
        std::uint64_t size = 0, mtime = 0, ino = 0;
    };
    std::map<std::string, Row> rows;
    bool dirty = false;

    static FileCache load(const std::filesystem::path& state) {
        FileCache c;
        std::ifstream in(state / cache_name);
        std::string line;
        while (std::getline(in, line)) {
            std::istringstream ls(line);
            Row r;
            std::string path;
            if (!(ls >> r.name >> r.size >> r.mtime >> r.ino)) continue;
            ls.get();
            std::getline(ls, path);
            if (!path.empty()) c.rows[path] = r;
        }
        return c;
    }
    void save(const std::filesystem::path& state) const {
        if (!dirty) return;
        std::string text;
        for (const auto& [path, r] : rows)
            text += r.name + " " + std::to_string(r.size) + " " + std::to_string(r.mtime) + " " +
                    std::to_string(r.ino) + " " + path + "\n";
        auto dir = RootDir::open_or_create(state);
        dir.write_atomic(cache_name, text, Sync::no);
    }
};

// The copies one sync has seen: the names under EFI/nixos (one listing), and
// each source it has placed (kernels are shared by many entries).
struct Placed {
    std::set<std::string> regular;                 // "EFI/nixos/NAME" of its regular files
    std::map<std::string, std::string> by_source;  // source path + kind -> "/EFI/nixos/NAME"
};

// Copies `src` into the ESP under its content name (once) and returns
// "/EFI/nixos/<hash>-<kind>.efi".
std::string ensure_copied(RootDir& esp, FileCache& cache, Placed& placed, const std::string& src,
                          std::string_view kind) {
    const std::string key = src + '\n' + std::string(kind);
    if (auto it = placed.by_source.find(key); it != placed.by_source.end()) return it->second;
    struct stat st {};
    if (::stat(src.c_str(), &st) != 0) throw_errno("reading " + q(src));
    if (!S_ISREG(st.st_mode)) throw Error(q(src) + " is not a regular file");
    auto mtime =
        static_cast<std::uint64_t>(st.st_mtim.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(st.st_mtim.tv_nsec);
    auto it = cache.rows.find(src);
    std::string name;
    if (it != cache.rows.end() && it->second.size == static_cast<std::uint64_t>(st.st_size) &&
        it->second.mtime == mtime && it->second.ino == st.st_ino &&
        it->second.name.ends_with("-" + std::string(kind) + ".efi")) {
        name = it->second.name;
    } else {
        name = content_file_name(sha256_of_file(src), kind);
        cache.rows[src] = {name, static_cast<std::uint64_t>(st.st_size), mtime, static_cast<std::uint64_t>(st.st_ino)};
        cache.dirty = true;
    }
    if (!placed.regular.count(name)) {
        esp.mkdirs(files_dir);
        esp.copy_in(src, name, Sync::file_only);  // the directory is fsynced once, after the batch
        placed.regular.insert(name);
    }
    return placed.by_source[key] = "/" + name;
}

}  // namespace

SyncResult SdBootBackend::sync(std::span<const Generation> generations, const SyncOptions& opts) {
    const Forget forget{*this};
    const auto scanned = scan_for_change();
    const Scanned& s = *scanned;
    remove_leftovers();
    auto esp = RootDir::open(opts_.esp);
    auto cache = FileCache::load(opts_.state);
    Placed placed{esp.regular_files(files_dir), {}};
    SyncResult result;
    std::set<std::string> wanted;
    std::map<std::string, std::string> folded;  // lowercased ID -> the ID that has its file name
    bool made_dir = false;
    try {
        for (const auto& g : generations) {
            std::vector<std::string> specs{""};
            for (const auto& [name, _] : g.doc.specialisations) specs.push_back(name);
            for (const auto& spec : specs) {
                auto id = entry_id(g.number, spec);
                // The ESP is FAT, which ignores case: two specialisation names that
                // differ only in case would share one entry file. The first in name
                // order ("Foo" before "foo") keeps it; the other is left out, with a
                // warning.
                if (auto [at, fresh] = folded.emplace(lower(id), id); !fresh) {
                    result.warnings.push_back(
                        "generation " + std::to_string(g.number) + ": specialisation " + q(spec) +
                        " gets no entry: on the ESP's FAT file system, which ignores case, its file "
                        "name is the same as " +
                        q(at->second) + "'s");
                    continue;
                }
                wanted.insert(id);
                if (s.duplicate_stems.count(id)) continue;  // s.torn_fix says so, in s.warnings
                const BootSpec& bs = spec.empty() ? g.doc.boot : g.doc.specialisations.at(spec);
                EntryFiles files;
                files.kernel = ensure_copied(esp, cache, placed, bs.kernel, "linux");
                if (bs.initrd) files.initrd = ensure_copied(esp, cache, placed, *bs.initrd, "initrd");
                auto text = format_generation_entry(g, spec, files);
                if (text.size() > max_entry_size) {  // what nixboot writes it must be able to read back
                    result.warnings.push_back("generation " + std::to_string(g.number) + ": entry " + q(id) +
                                              " would be " + std::to_string(text.size()) + " bytes, more than the " +
                                              std::to_string(max_entry_size) + " nixboot reads; not written");
                    continue;
                }
                auto it = s.by_stem.find(id);
                if (it != s.by_stem.end()) {
                    const auto& f = s.files[it->second.front()];
                    if (f.text == text) continue;
                    esp.write_atomic(std::string(entries_dir) + "/" + f.file_name, text, Sync::file_only);
                    result.updated.push_back(id);
                } else {
                    if (!made_dir) {
                        esp.mkdirs(entries_dir);
                        made_dir = true;
                    }
                    EntryName n{id, std::nullopt, ".conf"};
                    if (opts.new_tries > 0) n = make_trial(n, opts.new_tries);
                    esp.write_atomic(std::string(entries_dir) + "/" + format_entry_name(n), text, Sync::file_only);
                    result.added.push_back(id);
                }
            }
        }
        for (const auto& f : s.files) {
            if (!f.ours || wanted.count(f.name.stem) || opts.protect.count(f.name.stem)) continue;
            if (s.duplicate_stems.count(f.name.stem)) {
                // Its names may share one cluster chain: unlinking them frees it
                // under the other (see settle_torn_rename). Kept, and with them
                // the kernel and initrd they name (collect_garbage reads both).
                if (!f.stale)
                    result.warnings.push_back("entry " + q(f.name.stem) +
                                              " is not removed while it has more than one file name");
                continue;
            }
            esp.remove(std::string(entries_dir) + "/" + f.file_name, Sync::yes);
            result.removed.push_back(f.name.stem);
        }
        if (!result.added.empty() || !result.updated.empty()) {
            if (esp.exists(files_dir)) esp.fsync_dir(files_dir);
            esp.fsync_dir(entries_dir);
        }
    } catch (const Error& e) {
        try {  // keep what was written before the failure
            if (esp.exists(files_dir)) esp.fsync_dir(files_dir);
            if (esp.exists(entries_dir)) esp.fsync_dir(entries_dir);
        } catch (const Error&) {}
        cache.save(opts_.state);
        std::string done;
        if (!result.added.empty() || !result.updated.empty() || !result.removed.empty())
            done = " (before the failure: " + std::to_string(result.added.size()) + " added, " +
                   std::to_string(result.updated.size()) + " updated, " + std::to_string(result.removed.size()) +
                   " removed; existing entries untouched)";
        rethrow_with_context(e, std::string("installing entries into ") + opts_.esp.string() + done + "");
    }
    cache.save(opts_.state);
    // Pad loader.conf now, so the promotion after the next trial rewrites it in place.
    if (auto text = esp.read(loader_conf_path, 64 * 1024); text && unpadded(*text) == *text)
        write_loader_conf(esp, s.conf);
    for (auto& w : s.warnings) result.warnings.push_back(w);
    return result;
}

ArmMode SdBootBackend::arm(std::string_view id, const ArmOptions& opts) {
    const Forget forget{*this};
    const auto scanned = scan_for_change();
    const Scanned& s = *scanned;
    auto esp = RootDir::open(opts_.esp);
    const auto* f = s.find(id);
    if (!f) throw Error("no entry " + q(id) + " in " + esp.display(entries_dir).string());
    if (opts.tries == 0) throw UsageError("tries must be at least 1");
    // The one-shot would match every name, and the loader could not count a
    // stale one (its rename target exists): arm only an entry with one name.
    if (auto torn = s.torn_fix.find(std::string(id)); torn != s.torn_fix.end())
        throw Error("cannot arm " + q(id) + ": " + torn->second);
    auto target = format_entry_name(make_trial(f->name, opts.tries));
    // More than one try needs the sort order: systemd-boot deletes
    // LoaderEntryOneShot as it reads it (src/boot/boot.c, 252 to 262), so a
    // one-shot is one boot whatever the counter says, and the pinned default
    // would win the second. By sort order the loader itself picks the trial
    // while it has tries left and sorts it last once they are spent.
    // Where the loader has `preferred` (systemd-boot 260+), LoaderEntryPreferred
    // gives the same N boots with the good default still pinned: the loader
    // skips a preferred entry once it is marked bad and boots the default.
    const bool preferred_mode = opts.tries > 1 && s.vars_writable && s.preferred_supported;
    bool sort_mode = !preferred_mode && (!s.vars_writable || !s.oneshot_supported || opts.tries > 1);
    const std::string sort_why =
        !s.vars_writable || !s.oneshot_supported
            ? "without writable EFI variables"
            : "with " + std::to_string(opts.tries) + " tries (more than one is armed by sort order)";
    if (sort_mode) {
        if (s.efi_default && !s.vars_writable)
            throw Error("cannot arm " + q(id) + " by sort order: EFI variable LoaderEntryDefault (" +
                        q(*s.efi_default) + ") overrides loader.conf and EFI variables are not writable");
        // The trial must sort first, and once spent, the first entry must be
        // good: good entries before it are a refusal; other trials that would
        // sort before the good fallback are parked as bad (they can be retried).
        std::vector<SortItem> after = s.sorted;
        auto is_f = [&](const SortItem& it) { return it.origin.empty() && it.file_name == f->file_name; };
        for (auto& it : after)
            if (is_f(it)) {
                it.file_name = target;
                it.counter = Counter{opts.tries, 0};
            }
        sort_like_systemd_boot(after, s.scheme);
        std::vector<std::string> park;
        bool seen_target = false;
        for (const auto& it : after) {
            if (it.origin.empty() && it.file_name == target) {
                seen_target = true;
                continue;
            }
            auto n = try_parse_entry_name(it.file_name);
            bool good = !it.counter;
            bool trying = it.counter && it.counter->left > 0;
            const std::string where = it.origin.empty() ? "" : " in " + it.origin;
            if (good) {
                if (!seen_target)
                    throw Error("cannot arm " + q(id) + " " + sort_why + ": good entry " +
                                q(n && it.origin.empty() ? n->stem : it.file_name + it.id_suffix) + where +
                                " sorts before it, so the loader would not boot the trial");
                break;  // the fallback
            }
            if (trying) {
                if (!it.origin.empty() || !n || !parse_entry_id(n->stem))
                    throw Error("cannot arm " + q(id) + " " + sort_why + ": entry " + q(it.file_name + it.id_suffix) +
                                where + " (not nixboot's) would boot before the good fallback");
                park.push_back(it.file_name);
            }
        }
        for (const auto& p : park) {
            auto n = parse_entry_name(p);
            esp.rename_idempotent(std::string(entries_dir) + "/" + p,
                                  std::string(entries_dir) + "/" + format_entry_name(make_bad(n)), Sync::yes);
            spdlog::debug("parked trial {} as bad while {} is armed by sort order", p, id);
        }
    }
    if (f->file_name != target)
        esp.rename_idempotent(std::string(entries_dir) + "/" + f->file_name, std::string(entries_dir) + "/" + target,
                              Sync::yes);
    if (!sort_mode) {
        // A pattern, not one ID: which ID rule the loader of the next boot
        // follows is not known here (LoaderInfo names the loader that ran this
        // boot, and 257's stable updates changed the rule). It must select the
        // trial and nothing else under both rules.
        const std::string pattern = one_shot_pattern(target);
        const char* what = preferred_mode ? "preferred entry" : "one-shot";
        for (const auto& it : s.sorted) {
            if (it.origin.empty() && it.file_name == f->file_name) continue;
            for (IdScheme scheme : {IdScheme::with_counter, IdScheme::without_counter})
                if (efi_fnmatch(pattern, sort_item_id(it, scheme)))
                    throw Error("cannot arm " + q(id) + ": the " + what + " " + q(pattern) +
                                " would also select entry " + q(it.file_name + it.id_suffix) + " in " +
                                (it.origin.empty() ? esp.display(entries_dir).string() : it.origin));
        }
        EfiVars vars(opts_.efivars);
        if (preferred_mode) {
            if (s.one_shot) vars.remove(efivar_name::loader_entry_oneshot);  // it would win the next boot
            vars.set_string(efivar_name::loader_entry_preferred, pattern);
            return ArmMode::preferred;
        }
        vars.set_string(efivar_name::loader_entry_oneshot, pattern);
        return ArmMode::one_shot;
    }
    if (s.vars_writable && (s.efi_default || s.one_shot || s.efi_preferred)) {
        // Each would override the sort order; set_default(fallback) left
        // LoaderEntryDefault naming the fallback at most.
        EfiVars vars(opts_.efivars);
        if (s.one_shot) vars.remove(efivar_name::loader_entry_oneshot);
        if (s.efi_default) vars.remove(efivar_name::loader_entry_default);
        if (s.efi_preferred) vars.remove(efivar_name::loader_entry_preferred);
    }
    if (s.conf.get("default")) {
        auto conf = s.conf;
        conf.unset("default");
        write_loader_conf(esp, conf);
    }
    return ArmMode::sort_order;
}

void SdBootBackend::disarm() {
    const Forget forget{*this};
    EfiVars vars(opts_.efivars);
    for (const char* name : {efivar_name::loader_entry_oneshot, efivar_name::loader_entry_preferred}) {
        std::optional<std::string> cur;
        try {
            cur = vars.get_string(name);
        } catch (const Error&) {
            cur = std::string("?");  // unreadable: remove it all the same
        }
        if (!cur) continue;
        if (vars.writable() != Writable::yes)
            throw Error("cannot remove EFI variable " + std::string(name) + " (" + vars.file_of(name).string() +
                        "): EFI variables are not writable");
        vars.remove(name);
    }
}

void SdBootBackend::set_state(std::string_view id, EntryState state) {
    const Forget forget{*this};
    if (state == EntryState::trial) throw Error("set_state: use arm() to make " + q(id) + " a trial");
    const auto scanned = scan_for_change();
    const Scanned& s = *scanned;
    auto esp = RootDir::open(opts_.esp);
    const auto* f = s.find(id);
    if (!f) throw Error("no entry " + q(id) + " in " + esp.display(entries_dir).string());
    auto target = format_entry_name(state == EntryState::good ? make_good(f->name) : make_bad(f->name));
    if (target == f->file_name) return;
    // Only the name that holds the entry is renamed, as bless-boot renames
    // only LoaderBootCountPath's file; a stale name already there counts as
    // done, as bless-boot counts an existing target (never replaced: the two
    // may share one cluster chain).
    for (auto i : s.by_stem.at(f->name.stem))
        if (s.files[i].file_name == target) return;
    esp.rename_idempotent(std::string(entries_dir) + "/" + f->file_name, std::string(entries_dir) + "/" + target,
                          Sync::yes);
}

void SdBootBackend::set_default(std::string_view id) {
    const Forget forget{*this};
    const auto scanned = scan_for_change();
    const Scanned& s = *scanned;
    auto esp = RootDir::open(opts_.esp);
    const auto* f = s.find(id);
    if (!f) throw Error("no entry " + q(id) + " in " + esp.display(entries_dir).string());
    if (counter_state(f->name) != CounterState::good)
        throw Error("refusing to make " + q(id) + " the default: it is " +
                    (counter_state(f->name) == CounterState::bad ? "bad" : "a trial") + " (" + f->file_name + ")");
    if (!f->unbootable.empty())
        throw Error("refusing to make " + q(id) + " the default: " + f->file_name + ": " + f->unbootable +
                    ", so the loader skips it; run `nixboot install` to rewrite it");
    auto value = lower(f->file_name);
    if (s.efi_default && (lower(*s.efi_default) != value || s.quirky_vars.count(efivar_name::loader_entry_default))) {
        EfiVars vars(opts_.efivars);
        if (vars.writable() != Writable::yes)
            throw Error("EFI variable LoaderEntryDefault (" + q(*s.efi_default) +
                        ") overrides loader.conf and cannot be removed: EFI variables are not writable");
        vars.remove(efivar_name::loader_entry_default);
    }
    // `preferred` outranks the default (systemd-boot 260+) and skips only bad
    // entries, so a foreign one could pick a trial: only nixboot's own armed
    // trial keeps LoaderEntryPreferred, and loader.conf never has the key.
    // Where EFI variables cannot be written and the loader has no `preferred`,
    // it is left as read() warns.
    if (s.efi_preferred && !s.preferred_trial() && (s.vars_writable || s.preferred_supported)) {
        EfiVars vars(opts_.efivars);
        if (vars.writable() != Writable::yes)
            throw Error("EFI variable LoaderEntryPreferred (" + q(*s.efi_preferred) +
                        ") outranks the default and cannot be removed: EFI variables are not writable");
        vars.remove(efivar_name::loader_entry_preferred);
    }
    if (s.conf.get("default") != value || s.conf.get("preferred")) {
        auto conf = s.conf;
        conf.set("default", value);
        conf.unset("preferred");
        write_loader_conf(esp, conf);
    }
}

// What an interrupted sync left grows with every retry (a kernel-sized temp
// file, copies no entry names yet): remove it before anything is copied, so a
// retry after ENOSPC has the space the failed run took. Under the lock.
void SdBootBackend::remove_leftovers() {
    const Forget forget{*this};
    auto esp = RootDir::open(opts_.esp);
    std::size_t temps = 0;
    for (const char* dir : {"loader", entries_dir, files_dir}) temps += esp.remove_stale_temp_files(dir, Sync::yes);
    const auto gc = collect_garbage();
    if (temps > 0 || !gc.removed.empty())
        spdlog::debug("removed {} temporary files and {} unreferenced copies an interrupted run left in {}", temps,
                      gc.removed.size(), opts_.esp.string());
}

GcResult SdBootBackend::collect_garbage() {
    const Forget forget{*this};
    auto esp = RootDir::open(opts_.esp);
    std::set<std::string> referenced;
    const auto names = esp.list(entries_dir);
    const auto entries = names.empty() ? std::nullopt : esp.subdir(entries_dir);
    for (const auto& name : names) {
        if (!name.ends_with(".conf")) continue;
        std::optional<EntryText> entry;
        try {
            entry = entries ? read_entry(*entries, name) : std::nullopt;
        } catch (const Error& e) {
            // Its references are unknown: remove nothing rather than a file it boots (G4).
            spdlog::debug("not collecting garbage: {}", e.what());
            return {};
        }
        if (!entry) continue;
        std::istringstream in(entry->text);
        std::string line;
        while (std::getline(in, line)) {
            std::istringstream ls(line);
            std::string key, value;
            ls >> key >> value;
            if (key == "linux" || key == "initrd" || key == "devicetree" || key == "efi") {
                while (!value.empty() && value.front() == '/') value.erase(0, 1);
                referenced.insert(lower(value));
            }
        }
    }
    GcResult r;
    for (const auto& name : esp.list(files_dir)) {
        std::string rel = std::string(files_dir) + "/" + name;
        if (referenced.count(lower(rel)) || !esp.is_regular_file(rel)) continue;
        if (!name.ends_with(".efi") && !name.ends_with(".EFI")) continue;
        esp.remove(rel, Sync::yes);
        r.removed.push_back(rel);
    }
    return r;
}

}  // namespace nixboot

namespace nixboot {

std::string SdBootBackend::fingerprint() const {
    auto esp = RootDir::open(opts_.esp);
    std::string out = "sdboot1\n";
    auto stat_line = [&](const std::string& rel) {
        struct stat st {};
        if (::fstatat(esp.fd(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            out += rel + " -\n";
            return;
        }
        out += rel + " " + std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
               std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + " " +
               std::to_string(st.st_ino) + "\n";
    };
    stat_line(loader_conf_path);
    // Entries: name, size, mtime, inode of each (stat relative to the open dir).
    try {
        auto dir = esp.open_file(entries_dir, O_RDONLY | O_DIRECTORY);
        std::vector<std::string> names;
        if (DIR* stream = ::fdopendir(dir.get())) {
            dir.release();
            while (const dirent* e = ::readdir(stream))
                if (e->d_name[0] != '.') names.emplace_back(e->d_name);
            std::sort(names.begin(), names.end());
            for (const auto& name : names) {
                struct stat st {};
                if (::fstatat(::dirfd(stream), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    out += name + " -\n";
                    continue;
                }
                out += name + " " + std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
                       std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + " " +
                       std::to_string(st.st_ino) + "\n";
            }
            ::closedir(stream);
        }
    } catch (const SysError& e) {
        out += std::string("entries: ") + e.what() + "\n";
    }
    // Kernels and initrds are content-named: their names say enough.
    for (const auto& name : esp.list(files_dir)) out += name + "\n";
    EfiVars vars(opts_.efivars);
    out += vars.writable() == Writable::yes ? "vars rw\n" : "vars ro\n";
    for (const char* name : {efivar_name::loader_info, efivar_name::loader_features, efivar_name::loader_entry_oneshot,
                             efivar_name::loader_entry_default, efivar_name::loader_entry_preferred,
                             efivar_name::loader_boot_count_path, efivar_name::loader_entry_selected}) {
        out += name;
        try {
            if (auto raw = vars.get_raw(name, 4096)) {
                out += " " + sha256_hex(std::string_view(reinterpret_cast<const char*>(raw->data()), raw->size()));
            } else {
                out += " -";
            }
        } catch (const Error& e) {
            out += std::string(" error ") + e.what();
        }
        out += "\n";
    }
    return out;
}

}  // namespace nixboot
