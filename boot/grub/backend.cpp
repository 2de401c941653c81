#include "boot/grub/backend.hpp"

#include "boot/generations.hpp"
#include "boot/grub/grubcfg.hpp"
#include "boot/grub/linux_args.hpp"
#include "boot/util/process.hpp"
#include "boot/health/cmdline.hpp"
#include "boot/util/sha256.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

namespace nixboot::grub {

// The state as stored: the newer intact copy, and which slot holds it.
struct Stored {
    GrubState state;
    std::uint64_t seq = 0;
    int slot = -1;  // -1: no copy yet (first install)
};

namespace {

// What nixboot reads back of its state copies and grub.cfg; a larger text is
// refused before it is written (every verb would fail reading it).
constexpr std::size_t max_state_bytes = 64 << 20;
constexpr std::size_t max_cfg_bytes = 64 << 20;

std::string q(std::string_view s) { return "'" + std::string(s) + "'"; }

void check_writable_size(const RootDir& dir, std::string_view rel, std::size_t size, std::size_t max) {
    if (size > max)
        throw Error("not writing " + q(dir.display(rel).string()) + ": it would be " + std::to_string(size) +
                    " bytes, more than the " + std::to_string(max) +
                    " nixboot reads back (keep fewer generations: install --keep)");
}

std::optional<unsigned> parse_unsigned(std::string_view text, unsigned max) {
    if (text.empty() || text.size() > 10 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size() || v > max) return std::nullopt;
    return v;
}

// The toplevel booted by a command line without nixboot.entry= (a stock
// grub.cfg): init=TOPLEVEL/init, TOPLEVEL an absolute store path.
std::optional<std::filesystem::path> init_toplevel(std::string_view cmdline) {
    std::optional<std::filesystem::path> found;
    std::istringstream words{std::string(cmdline)};
    for (std::string w; words >> w;) {
        if (!w.starts_with("init=")) continue;
        std::filesystem::path init(w.substr(5));
        found.reset();
        if (init.is_absolute() && init.filename() == "init" && init == init.lexically_normal() &&
            init.parent_path() != init.root_path())
            found = init.parent_path();
    }
    return found;
}

// Reads both copies; a damaged one (torn write, unreadable after a power cut)
// is skipped with a warning. Only the newest intact copy's state is parsed
// (the other is the next write's target). Throws only when copies exist and
// none is whole.
Stored load_stored(const RootDir& boot) {
    struct Copy {
        std::string text;
        CheckedSlot checked;  // views into `text`
        int slot = 0;
    };
    std::vector<std::unique_ptr<Copy>> copies;  // never moved once checked
    std::vector<std::string> damaged;
    for (int i = 0; i < 2; ++i) {
        const std::string_view rel = state_slot_paths[i];
        try {
            auto text = boot.read(rel, max_state_bytes);
            if (!text) continue;
            auto c = std::make_unique<Copy>(Copy{std::move(*text), {}, i});
            c->checked = check_state_slot(c->text, boot.display(rel).string());
            copies.push_back(std::move(c));
        } catch (const Error& e) {
            damaged.push_back(e.what());
        }
    }
    std::sort(copies.begin(), copies.end(),
              [](const auto& a, const auto& b) { return a->checked.seq > b->checked.seq; });
    Stored best;
    for (const auto& c : copies) {
        try {
            best = {parse_state(c->checked.json, boot.display(state_slot_paths[c->slot]).string()), c->checked.seq,
                    c->slot};
            break;
        } catch (const Error& e) {
            damaged.push_back(e.what());
        }
    }
    if (best.slot < 0 && !damaged.empty())
        throw Error("no intact copy of the GRUB state: " + damaged.front() +
                    (damaged.size() > 1 ? "; " + damaged.back() : std::string()));
    for (const auto& d : damaged) spdlog::warn("{} (using the other copy)", d);
    return best;
}

// Writes `next` into the slot that does not hold the current state, in place
// when it fits (no FAT allocation changes), else by atomic replacement (the
// state outgrew its slot: only when entries are added). No write when the
// state is unchanged.
void store_state(RootDir& boot, const Stored& from, const GrubState& next) {
    if (from.slot >= 0 && from.state == next) return;
    const std::string_view rel = state_slot_paths[from.slot == 0 ? 1 : 0];
    std::size_t size = 0;
    if (const auto st = boot.lstat(rel); st && S_ISREG(st->st_mode)) size = static_cast<std::size_t>(st->st_size);
    const std::string text = format_state_slot(next, from.seq + 1, size);
    check_writable_size(boot, rel, text.size(), max_state_bytes);
    if (boot.overwrite_in_place(rel, text, Sync::yes)) return;
    // First write, or the state outgrew its slot (entries were added): size
    // both copies alike now, so later trials and verdicts write in place.
    boot.write_atomic(rel, text, Sync::yes);
    boot.write_atomic(state_slot_paths[from.slot == 0 ? 0 : 1], text, Sync::yes);
}

// Writes `rel` only when its content differs; returns whether it wrote.
bool write_if_changed(RootDir& dir, std::string_view rel, const std::string& text, std::size_t max) {
    check_writable_size(dir, rel, text.size(), max);
    std::optional<std::string> old;
    try {
        old = dir.read(rel, max);
    } catch (const Error& e) {
        spdlog::debug("replacing unreadable {}", e.what());  // rewritten below
    }
    if (old && *old == text) return false;
    dir.write_atomic(rel, text, Sync::yes);
    return true;
}

// The value of the first `set default='...'` line of a grub.cfg nixboot wrote.
std::optional<std::string> cfg_value(const std::string& cfg, std::string_view prefix) {
    auto p = cfg.find(prefix);
    if (p == std::string::npos) return std::nullopt;
    p += prefix.size();
    auto e = cfg.find('\'', p);
    if (e == std::string::npos) return std::nullopt;
    return cfg.substr(p, e - p);
}

const EntryRecord* newest_good(const GrubState& s) {
    const EntryRecord* best = nullptr;
    for (const auto& e : s.entries) {
        if (e.state != EntryState::good) continue;
        if (!best || e.generation > best->generation ||
            (e.generation == best->generation && e.specialisation.empty() && !best->specialisation.empty()))
            best = &e;
    }
    return best;
}

// Copies `src` into BOOT/kernels under a content-derived name, once; the
// copy cache in `state` avoids hashing unchanged sources again.
// Errors only writing can give: about /boot, never about the generation's
// files (which are only read).
bool boot_cannot_write(int errno_value) {
    return errno_value == ENOSPC || errno_value == EDQUOT || errno_value == EROFS;
}

// The copies one sync has seen: the regular files under BOOT/kernels (one
// listing), and each source it has placed (kernels are shared by many entries).
struct Placed {
    std::set<std::string> regular;                 // "kernels/NAME" of its regular files
    std::map<std::string, std::string> by_source;  // source path + kind -> "kernels/NAME"
};

std::string ensure_copied(RootDir& boot, GrubState& state, Placed& placed, const std::string& src,
                          std::string_view kind) {
    const std::string key = src + '\n' + std::string(kind);
    if (auto it = placed.by_source.find(key); it != placed.by_source.end()) return it->second;
    struct stat st {};
    if (::stat(src.c_str(), &st) != 0) throw_errno("reading " + q(src));
    if (!S_ISREG(st.st_mode)) throw Error(q(src) + " is not a regular file");
    const std::uint64_t mtime =
        static_cast<std::uint64_t>(st.st_mtim.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(st.st_mtim.tv_nsec);
    std::string name;
    auto it = state.copies.find(src);
    if (it != state.copies.end() && it->second.size == static_cast<std::uint64_t>(st.st_size) &&
        it->second.mtime_ns == mtime && it->second.ino == static_cast<std::uint64_t>(st.st_ino) &&
        it->second.name.ends_with("-" + std::string(kind))) {
        name = it->second.name;
    } else {
        name = std::string(kernels_dir) + "/" + sha256_of_file(src).substr(0, 32) + "-" + std::string(kind);
        state.copies[src] = {name, static_cast<std::uint64_t>(st.st_size), mtime,
                             static_cast<std::uint64_t>(st.st_ino)};
    }
    if (!placed.regular.count(name)) {
        boot.mkdirs(kernels_dir);
        boot.copy_in(src, name, Sync::yes);
        placed.regular.insert(name);
    }
    return placed.by_source[key] = name;
}

}  // namespace

GrubSettings parse_grub_settings(const std::map<std::string, std::string>& extra) {
    GrubSettings s;
    for (const auto& [key, value] : extra) {
        if (key == "grub-device-path") {
            if (!value.empty() && value != "/" && (value.front() != '/' || value.back() == '/'))
                throw UsageError("grub-device-path: '" + value + "' is not an absolute path like /boot");
            s.device_path = value == "/" ? "" : value;
        } else if (key == "grub-efi-dir") {
            if (value.empty() || value.front() != '/')
                throw UsageError("grub-efi-dir: '" + value + "' is not an absolute path");
            s.efi_dir = value;
        } else if (key == "grub-probe-boot") {
            s.probe_boot = parse_probe_override(value, key);
        } else if (key == "grub-probe-efi") {
            s.probe_efi = parse_probe_override(value, key);
        } else if (key == "grub-timeout") {
            auto t = parse_unsigned(value, 3600);
            if (!t) throw UsageError("grub-timeout: '" + value + "' is not a number of seconds from 0 to 3600");
            s.timeout = *t;
        } else if (key == "grub-cmdline") {
            s.cmdline = value;
        } else if (key == "grub-target") {
            s.target = value;
        } else if (key == "grub-device") {
            s.device = value;
        } else if (key == "grub-removable") {
            if (value != "yes" && value != "no") throw UsageError("grub-removable: '" + value + "' is not yes or no");
            s.removable = value == "yes";
        } else if (key == "grub-install") {
            s.install_program = value;
        } else {
            throw UsageError("unknown key '" + key + "'");
        }
    }
    return s;
}

// ---- GrubBackend -----------------------------------------------------------

namespace {

// grub-probe, unless config injects answers for a directory.
class ConfiguredProbe final : public Prober {
public:
    ConfiguredProbe(GrubSettings s, std::filesystem::path boot) : s_(std::move(s)), boot_(std::move(boot)) {}
    FsInfo probe(const std::filesystem::path& dir) const override {
        if (dir == boot_ && s_.probe_boot) return *s_.probe_boot;
        if (s_.efi_dir && dir == *s_.efi_dir && s_.probe_efi) return *s_.probe_efi;
        return GrubProbe().probe(dir);
    }

private:
    GrubSettings s_;
    std::filesystem::path boot_;
};

}  // namespace

GrubBackend::GrubBackend(const BackendOptions& opts) : opts_(opts), settings_(parse_grub_settings(opts.extra)) {
    prober_ = std::make_shared<ConfiguredProbe>(settings_, opts_.esp);
}

GrubBackend::GrubBackend(const BackendOptions& opts, std::shared_ptr<const Prober> prober)
    : opts_(opts), settings_(parse_grub_settings(opts.extra)), prober_(std::move(prober)) {}

const EnvPlacement& GrubBackend::placement() const {
    if (!placement_) {
        std::optional<FsInfo> esp;
        if (settings_.efi_dir) esp = prober_->probe(*settings_.efi_dir);
        placement_ = place_env(prober_->probe(opts_.esp), esp);
        spdlog::debug("grub: env placement: {}", placement_->reason);
    }
    return *placement_;
}

std::string GrubBackend::device_path() const {
    if (settings_.device_path) return *settings_.device_path;
    if (!device_path_) {
        ProcessResult r;
        try {
            r = run_process({"grub-mkrelpath", opts_.esp.string()});
        } catch (const Error& e) {
            throw Error(std::string(e.what()) + "; set grub-device-path");
        }
        if (r.exit_status != 0)
            throw Error("cannot tell where " + opts_.esp.string() +
                        " lies on its filesystem (grub-mkrelpath: " + first_line(r.err) + "); set grub-device-path");
        std::string p = first_line(r.out);
        while (!p.empty() && p.back() == '/') p.pop_back();
        device_path_ = p;
    }
    return *device_path_;
}

std::string GrubBackend::env_rel() const {
    return std::string(placement().where == EnvPlacement::Where::esp ? env_on_esp : env_path);
}

RootDir GrubBackend::open_env_dir() const {
    if (placement().where == EnvPlacement::Where::esp) return RootDir::open(*settings_.efi_dir);
    return RootDir::open(opts_.esp);
}

GrubCfgSpec GrubBackend::cfg_spec(const GrubState& state) const {
    GrubCfgSpec spec;
    const std::string dev = device_path();
    for (const auto& e : state.entries) {
        MenuEntry m;
        m.id = e.id;
        m.title = e.title;
        m.kernel = dev + "/" + e.kernel;
        if (!e.initrd.empty()) m.initrd = dev + "/" + e.initrd;
        m.params = e.params;
        spec.entries.push_back(std::move(m));
    }
    const EntryRecord* def = state.default_id ? state.find(*state.default_id) : nullptr;
    if (!def || def->state != EntryState::good) def = newest_good(state);
    if (!def && !state.entries.empty()) def = &state.entries.front();  // nothing good yet: the newest
    if (def) spec.default_id = def->id;
    const EnvPlacement& p = placement();
    spec.env.writer = p.writer;
    if (p.where == EnvPlacement::Where::esp) {
        spec.env.fs_uuid = p.esp_uuid;
        spec.env.path = "/" + std::string(env_on_esp);
    }
    spec.timeout = settings_.timeout;
    return spec;
}

// State first, then grub.cfg: a crash in between leaves the old grub.cfg,
// which only names files the state still keeps (GC runs after both).
// grub.cfg is rewritten only by sync (new or changed entries, settings): a
// trial, a verdict, a promotion or a rollback change grubenv and the state
// copies in place and never replace a file on /boot.
void GrubBackend::write_all(RootDir& boot, const Stored& from, const GrubState& state, bool with_cfg) {
    boot.mkdirs("grub");
    // Both sizes are checked before either file changes.
    std::optional<std::string> cfg;
    if (with_cfg && !state.entries.empty()) {
        cfg = format_grub_cfg(cfg_spec(state));
        check_writable_size(boot, cfg_path, cfg->size(), max_cfg_bytes);
    }
    store_state(boot, from, state);
    if (cfg) write_if_changed(boot, cfg_path, *cfg, max_cfg_bytes);
}

void GrubBackend::hold_reads(bool held) const {
    if (held) {
        ++holds_;
    } else if (--holds_ == 0) {
        held_.reset();
    }
}

std::shared_ptr<const Stored> GrubBackend::stored(const RootDir& boot) const {
    if (held_) return held_;
    auto s = std::make_shared<const Stored>(load_stored(boot));
    if (holds_ > 0) held_ = s;
    return s;
}

LoaderView GrubBackend::read() const {
    LoaderView v;
    v.bootloader = Bootloader::grub;
    auto boot = RootDir::open(opts_.esp);
    const auto held = stored(boot);
    const GrubState& state = held->state;

    std::optional<GrubEnv> env;
    try {
        auto dir = open_env_dir();
        std::string size_warning;
        env = read_grubenv(dir, env_rel(), &size_warning);
        if (!size_warning.empty()) v.warnings.push_back(size_warning);
    } catch (const Error& e) {
        v.warnings.push_back(std::string(e.what()) + " (left alone; the trial counter cannot be read)");
    }
    std::optional<std::string> armed;
    std::optional<unsigned> env_tries;
    if (env) {
        if (auto t = env->get("nixboot_trial"); t && !t->empty()) armed = *t;
        if (auto t = env->get("nixboot_tries")) {
            env_tries = parse_unsigned(*t, max_tries);
            if (!env_tries && armed) v.warnings.push_back("grubenv: nixboot_tries=" + q(*t) + " is not a number");
        }
    }

    // The default GRUB boots: grubenv's nixboot_default when it names an
    // entry (grub.cfg sets default from it), else grub.cfg's own.
    if (env)
        if (auto d = env->get("nixboot_default"); d && state.find(*d)) v.persistent_default = *d;
    if (!v.persistent_default) {
        try {
            if (const auto cfg = boot.read(cfg_path, max_cfg_bytes))
                v.persistent_default = cfg_value(*cfg, "\nset default='");
        } catch (const Error& e) {
            v.warnings.push_back(std::string(e.what()) + " (skipped; install rewrites it)");
        }
    }
    if (!v.persistent_default) v.persistent_default = state.default_id;

    for (const auto& r : state.entries) {
        Entry e;
        e.id = r.id;
        e.generation = r.generation;
        e.specialisation = r.specialisation;
        e.state = r.state;
        e.file = std::string(cfg_path);
        e.title = r.title;
        e.version = r.version;
        if (r.state == EntryState::trial) {
            e.tries_left = r.tries;
            if (armed == r.id && env_tries) {
                e.tries_left = *env_tries;
                e.tries_done = r.tries > *env_tries ? r.tries - *env_tries : 0;
                if (*env_tries == 0) e.state = EntryState::bad;  // GRUB spent every try
            }
        }
        v.entries.push_back(std::move(e));
    }
    if (armed) {
        v.armed = armed;
        v.armed_mode = ArmMode::one_shot;
        if (!state.find(*armed)) v.warnings.push_back("grubenv arms " + q(*armed) + ", which has no entry");
    }
    v.next_boot = v.persistent_default;
    if (armed && env_tries && *env_tries > 0 && state.find(*armed)) v.next_boot = armed;

    const EnvPlacement& p = placement();
    v.vars_writable = p.writer == EnvWriter::grub;
    if (p.writer == EnvWriter::stage1) v.warnings.push_back("GRUB cannot write its env block: " + p.reason);

    // What booted: nixboot.entry= on the kernel command line (GRUB puts it there).
    std::ifstream in(settings_.cmdline, std::ios::binary);
    if (in) {
        std::string text(health::max_cmdline_bytes, '\0');
        in.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<std::size_t>(in.gcount()));
        auto cmd = health::parse_kernel_cmdline(text);
        if (cmd.entry && parse_entry_id(*cmd.entry))
            v.booted = cmd.entry;
        else
            v.booted_toplevel = init_toplevel(text);
    }
    return v;
}

SyncResult GrubBackend::sync(std::span<const Generation> generations, const SyncOptions& opts) {
    const Forget forget{*this};
    auto boot = RootDir::open(opts_.esp);
    // What an interrupted sync left grows with every retry (a kernel-sized
    // temp file, copies no entry names yet): remove it before anything is
    // copied, so a retry after ENOSPC has the space the failed run took.
    std::size_t temps = 0;
    for (const std::string_view dir : {std::string_view("grub"), kernels_dir})
        temps += boot.remove_stale_temp_files(dir, Sync::yes);
    // Only behind nixboot's own grub.cfg: a stock one names kernels in a form
    // collect_garbage does not recognise, and must keep them until replaced.
    GcResult gc;
    std::optional<std::string> cfg_on_disk;
    try {
        cfg_on_disk = boot.read(cfg_path, max_cfg_bytes);
    } catch (const Error&) {}
    if (cfg_on_disk && cfg_on_disk->starts_with(cfg_header)) gc = collect_garbage();
    if (temps > 0 || !gc.removed.empty())
        spdlog::debug("removed {} temporary files and {} unreferenced copies an interrupted run left in {}", temps,
                      gc.removed.size(), opts_.esp.string());
    const auto held = this->stored(boot);
    const Stored& stored = *held;
    GrubState state = stored.state;
    SyncResult result;
    // Copies an interrupted run dropped from the state while the old
    // grub.cfg still named them go once the new grub.cfg is written.
    result.garbage_left = gc.kept_for_cfg > 0;
    std::set<std::string> wanted;
    Placed placed{boot.regular_files(kernels_dir), {}};

    for (const auto& g : generations) {
        std::vector<std::string> specs{""};
        for (const auto& [name, _] : g.doc.specialisations) specs.push_back(name);
        for (const auto& spec : specs) {
            const BootSpec& bs = spec.empty() ? g.doc.boot : g.doc.specialisations.at(spec);
            EntryRecord rec;
            rec.id = entry_id(g.number, spec);
            rec.generation = g.number;
            rec.specialisation = spec;
            wanted.insert(rec.id);
            try {
                rec.kernel = ensure_copied(boot, state, placed, bs.kernel, "linux");
                if (bs.initrd) rec.initrd = ensure_copied(boot, state, placed, *bs.initrd, "initrd");
            } catch (const SysError& e) {
                // /boot itself cannot take the copy: every entry would fail
                // alike, and an install that "succeeds" without it is stamped
                // as done, so freeing space would never bring it back. Fail
                // the install (nothing written yet), as systemd-boot's does.
                if (boot_cannot_write(e.errno_value())) throw;
                result.warnings.push_back("entry " + q(rec.id) + ": " + e.what() + "; not updated");
                continue;
            } catch (const Error& e) {
                result.warnings.push_back("entry " + q(rec.id) + ": " + e.what() + "; not updated");
                continue;
            }
            rec.version = !g.nixos_version.empty() ? g.nixos_version : bs.label;
            rec.title = entry_title(g.number, spec, g.time, rec.version);
            rec.params.push_back("init=" + bs.init);
            for (const auto& p : bs.kernel_params) rec.params.push_back(p);
            // grub.cfg leaves these out (grubcfg.hpp); said on every install, like systemd-boot's skipped entries.
            for (const auto& u : grub_linux_args(rec.params).unpassable)
                result.warnings.push_back("generation " + std::to_string(g.number) + ": kernel parameter " +
                                          q(u.param) + " is left out of GRUB entry " + q(rec.id) + ": " + u.reason);
            if (auto* old = state.find(rec.id)) {
                rec.state = old->state;
                rec.tries = old->tries;
                if (!(*old == rec)) {
                    *old = rec;
                    result.updated.push_back(rec.id);
                }
            } else {
                rec.state = opts.new_tries > 0 ? EntryState::trial : EntryState::good;
                rec.tries = opts.new_tries;
                state.entries.push_back(rec);
                result.added.push_back(rec.id);
            }
        }
    }

    // Never drop what the loader may boot: the default, the armed trial, and
    // whatever the caller protects (booted entry, ...).
    std::set<std::string> keep = opts.protect;
    if (state.default_id) keep.insert(*state.default_id);
    if (state.trial_id) keep.insert(*state.trial_id);
    std::erase_if(state.entries, [&](const EntryRecord& e) {
        if (wanted.count(e.id) || keep.count(e.id)) return false;
        result.removed.push_back(e.id);
        return true;
    });
    sort_entries(state.entries);
    const EntryRecord* def = state.default_id ? state.find(*state.default_id) : nullptr;
    if (!def || def->state != EntryState::good) {
        if (const auto* g = newest_good(state)) state.default_id = g->id;
    }
    // Drop cache rows of sources no entry uses any more.
    std::set<std::string> names;
    for (const auto& e : state.entries) {
        names.insert(e.kernel);
        names.insert(e.initrd);
    }
    std::erase_if(state.copies, [&](const auto& kv) { return !names.count(kv.second.name); });

    // Always regenerated (and written only when the text differs): grub.cfg
    // also depends on settings and on the env placement, not only the state.
    write_all(boot, stored, state, true);
    if (!state.entries.empty()) {
        // The env block must exist (1024 bytes, allocated) for GRUB to save into it.
        auto dir = open_env_dir();
        // grub.cfg takes the default from it: it must name the state's default
        // (a crash between the state and grubenv writes of set_default can
        // leave the older one there).
        const std::string rel = env_rel();
        auto env = read_grubenv(dir, rel);  // write_grubenv refuses a block of another size
        const bool missing = !env;
        if (missing) env.emplace();
        if (missing || (state.default_id && env->get("nixboot_default") != *state.default_id)) {
            if (state.default_id) env->set("nixboot_default", *state.default_id);
            if (auto slash = rel.rfind('/'); slash != std::string::npos) dir.mkdirs(rel.substr(0, slash));
            write_grubenv(dir, rel, *env, Sync::yes);
        }
    }
    return result;
}

namespace {
// A mount point: its device differs from its parent's. nixboot-stage1 only
// sees the root file system (mounted at /mnt-root) before switching root, so
// a grubenv on a separate /boot is out of its reach (the VM tests saw it).
bool is_own_file_system(const std::filesystem::path& dir) {
    struct stat self {
    }, parent{};
    if (::stat(dir.c_str(), &self) != 0 || ::stat((dir / "..").c_str(), &parent) != 0) return false;
    return self.st_dev != parent.st_dev;
}
}  // namespace

ArmMode GrubBackend::arm(std::string_view id, const ArmOptions& opts) {
    const Forget forget{*this};
    auto boot = RootDir::open(opts_.esp);
    const auto held = this->stored(boot);
    const Stored& stored = *held;
    GrubState state = stored.state;
    EntryRecord* rec = state.find(id);
    if (!rec) throw Error("no GRUB entry " + q(id) + " to arm (run 'nixboot install' first)");
    if (state.default_id == id) throw Error(q(id) + " is the default; a trial of it is pointless");
    if (opts.tries == 0 || opts.tries > max_tries)
        throw UsageError("--tries " + std::to_string(opts.tries) + ": GRUB counts from 1 to " +
                         std::to_string(max_tries));
    const EnvPlacement& p = placement();
    if (p.writer == EnvWriter::stage1 && !opts.accept_risk)
        throw Error("refusing to arm " + q(id) + ": " + p.reason +
                    ". Use --accept-risk to arm it anyway, or put /boot on a plain FAT/ext4 partition "
                    "(or set grub-efi-dir to a FAT ESP)");
    if (p.writer == EnvWriter::stage1 && is_own_file_system(opts_.esp))
        throw Error("refusing to arm " + q(id) + ": " + p.reason + ". But " + q(opts_.esp.string()) +
                    " is a file system of its own, which nixboot-stage1 cannot reach in the initrd: "
                    "nothing would count the tries, even with --accept-risk. Put /boot on a plain "
                    "FAT/ext4 partition (or set grub-efi-dir to a FAT ESP)");
    // Read the env first: a block we cannot parse is refused, not rewritten.
    auto envdir = open_env_dir();
    const std::string rel = env_rel();
    GrubEnv env = read_grubenv_to_write(envdir, rel).value_or(GrubEnv{});

    rec->state = EntryState::trial;
    rec->tries = opts.tries;
    state.trial_id = std::string(id);
    write_all(boot, stored, state, false);  // the state knows the trial before grubenv arms it

    env.set("nixboot_trial", id);
    env.set("nixboot_tries", std::to_string(opts.tries));
    if (state.default_id) env.set("nixboot_default", *state.default_id);
    if (auto slash = rel.rfind('/'); slash != std::string::npos) envdir.mkdirs(rel.substr(0, slash));
    write_grubenv(envdir, rel, env, Sync::yes);
    return ArmMode::one_shot;
}

void GrubBackend::disarm() {
    const Forget forget{*this};
    auto envdir = open_env_dir();
    const std::string rel = env_rel();
    if (auto env = read_grubenv(envdir, rel)) {  // write_grubenv refuses a block of another size
        bool changed = env->unset("nixboot_trial");
        changed = env->unset("nixboot_tries") || changed;
        if (changed) write_grubenv(envdir, rel, *env, Sync::yes);  // GRUB stops first
    }
    auto boot = RootDir::open(opts_.esp);
    const auto held = this->stored(boot);
    const Stored& stored = *held;
    if (stored.state.trial_id) {
        GrubState state = stored.state;
        state.trial_id.reset();
        write_all(boot, stored, state, false);
    }
}

void GrubBackend::set_state(std::string_view id, EntryState st) {
    const Forget forget{*this};
    if (st == EntryState::trial) throw UsageError("set_state: use arm() to make " + q(id) + " a trial");
    auto boot = RootDir::open(opts_.esp);
    const auto held = this->stored(boot);
    const Stored& stored = *held;
    GrubState state = stored.state;
    EntryRecord* rec = state.find(id);
    if (!rec) throw Error("no GRUB entry " + q(id));
    if (rec->state == st && rec->tries == 0) return;
    if (st == EntryState::bad && state.default_id == id)
        throw Error("refusing to mark " + q(id) + " bad while it is the default; move the default first");
    rec->state = st;
    rec->tries = 0;
    write_all(boot, stored, state, false);
}

void GrubBackend::set_default(std::string_view id) {
    const Forget forget{*this};
    auto boot = RootDir::open(opts_.esp);
    Stored stored = *this->stored(boot);
    const EntryRecord* rec = stored.state.find(id);
    if (!rec) throw Error("no GRUB entry " + q(id) + " to make the default");
    if (rec->state != EntryState::good)
        throw Error("refusing to make " + q(id) + " the default: it is " + std::string(to_string(rec->state)));
    if (stored.state.trial_id == id) {
        disarm();
        stored = *this->stored(boot);
    }
    // The env first: a block nixboot will not write stops it before the state changes.
    auto envdir = open_env_dir();
    const std::string rel = env_rel();
    GrubEnv env = read_grubenv(envdir, rel).value_or(GrubEnv{});
    if (env.get("nixboot_default") != id) refuse_other_size(envdir, rel);
    GrubState state = stored.state;
    state.default_id = std::string(id);
    write_all(boot, stored, state, false);
    if (env.get("nixboot_default") != id) {
        env.set("nixboot_default", id);
        if (auto slash = rel.rfind('/'); slash != std::string::npos) envdir.mkdirs(rel.substr(0, slash));
        write_grubenv(envdir, rel, env, Sync::yes);
    }
}

GcResult GrubBackend::collect_garbage() {
    const Forget forget{*this};
    auto boot = RootDir::open(opts_.esp);
    const GrubState state = stored(boot)->state;
    std::string cfg;
    try {
        cfg = boot.read(cfg_path, max_cfg_bytes).value_or("");
    } catch (const Error& e) {
        // What the grub.cfg on disk boots is unknown: remove nothing (G4).
        spdlog::debug("not collecting garbage: {}", e.what());
        return {};
    }
    std::set<std::string> referenced;
    for (const auto& e : state.entries) {
        referenced.insert(e.kernel);
        referenced.insert(e.initrd);
    }
    GcResult result;
    for (const auto& name : boot.list(kernels_dir)) {
        const std::string rel = std::string(kernels_dir) + "/" + name;
        // Also keep whatever the grub.cfg on disk still names (a crash
        // between the state and grub.cfg writes).
        if (referenced.count(rel)) continue;
        // Temporary files are remove_stale_temp_files's to judge (a torn
        // rename's twin shares the target's clusters on FAT).
        if (name.find(".nixboot-tmp-") != std::string::npos) continue;
        if (cfg.find("/" + rel + "'") != std::string::npos) {
            ++result.kept_for_cfg;
            continue;
        }
        if (!boot.is_regular_file(rel)) continue;
        if (boot.remove(rel, Sync::yes)) result.removed.push_back(rel);
    }
    return result;
}

std::string GrubBackend::fingerprint() const {
    std::string out = "grub1\n";
    for (const auto& [k, v] : opts_.extra) out += k + "=" + v + "\n";
    auto stat_line = [&](const std::filesystem::path& dir, std::string_view rel) {
        const auto path = dir / rel;
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0) {
            out += path.string() + " -\n";
            return;
        }
        out += path.string() + " " + std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
               std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + " " +
               std::to_string(st.st_ino) + "\n";
    };
    for (auto rel : {cfg_path, state_slot_paths[0], state_slot_paths[1], env_path, kernels_dir})
        stat_line(opts_.esp, rel);
    if (settings_.efi_dir) stat_line(*settings_.efi_dir, env_on_esp);
    return out;
}

std::unique_ptr<Backend> make_grub_backend(const BackendOptions& opts) { return std::make_unique<GrubBackend>(opts); }

// ---- grub-install ---------------------------------------------------------------

std::vector<std::string> grub_install_argv(const GrubSettings& s, const std::filesystem::path& boot_dir) {
    if (s.target.empty()) throw UsageError("--install-bootloader needs grub-target (x86_64-efi, i386-pc, ...)");
    std::vector<std::string> argv{s.install_program, "--target=" + s.target, "--boot-directory=" + boot_dir.string()};
    const bool efi = s.target.ends_with("-efi");
    if (efi) {
        if (!s.efi_dir) throw UsageError("grub-target " + s.target + " needs grub-efi-dir (the ESP)");
        argv.push_back("--efi-directory=" + s.efi_dir->string());
        argv.push_back("--bootloader-id=NixOS");
        if (s.removable) argv.push_back("--removable");
    } else if (s.target == "i386-pc") {
        if (s.device.empty()) throw UsageError("grub-target i386-pc needs grub-device (the disk, e.g. /dev/sda)");
        argv.push_back(s.device);
    } else if (!s.device.empty()) {
        argv.push_back(s.device);
    }
    return argv;
}

void install_grub_bootloader(const BackendOptions& opts) {
    const GrubSettings s = parse_grub_settings(opts.extra);
    const auto argv = grub_install_argv(s, opts.esp);
    const ProcessResult r = run_process(argv);
    if (r.exit_status != 0)
        throw Error(s.install_program + " failed (exit " + std::to_string(r.exit_status) +
                    "): " + first_line(r.err.empty() ? r.out : r.err));
}

}  // namespace nixboot::grub
