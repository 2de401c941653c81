#include "boot/machine.hpp"

#include "boot/generations.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"
#include "boot/util/process.hpp"
#include "boot/util/lock.hpp"

#include <spdlog/spdlog.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <set>

namespace nixboot {

// ---- the state machine -----------------------------------------------------------

namespace {

std::string q(std::string_view s) { return "'" + std::string(s) + "'"; }

// The newest good entry (a plain generation before its specialisations),
// other than `except`. Only an entry the loader shows may become the default:
// `bootable` leaves out the ones it skips (Entry::bootable).
enum class Shown { any, bootable };
const Entry* newest_good(const LoaderView& v, std::string_view except = {}, Shown shown = Shown::any) {
    const Entry* best = nullptr;
    for (const auto& e : v.entries) {
        if (e.state != EntryState::good || e.id == except || (shown == Shown::bootable && !e.bootable)) continue;
        if (!best || e.generation > best->generation ||
            (e.generation == best->generation && e.specialisation.empty() && !best->specialisation.empty()))
            best = &e;
    }
    return best;
}

// The view a change starts from; refused, with the fix, while the loader's
// state cannot be read (a malformed LoaderEntryDefault, for example).
LoaderView read_for_change(const Backend& backend) {
    auto view = backend.read();
    if (!view.blocking.empty()) throw Error(view.blocking.front());
    return view;
}

bool is_good(const LoaderView& v, const std::optional<std::string>& id) {
    if (!id) return false;
    const auto* e = v.find(*id);
    return e && e->state == EntryState::good;
}

// A sort-order arm is live while its entry still has tries left: the
// default must stay unpinned until the trial is decided.
bool sort_order_trial_pending(const LoaderView& v) {
    if (!v.armed || v.armed_mode != ArmMode::sort_order) return false;
    const auto* e = v.find(*v.armed);
    return e && e->state == EntryState::trial && e->tries_left > 0;
}

}  // namespace

Machine::Machine(Backend& backend, MachineOptions opts) : backend_(backend), opts_(std::move(opts)) {}

namespace {

struct Journaler {
    const std::filesystem::path& state;
    Bootloader bootloader;
    std::string boot_id;

    void operator()(JournalEvent ev, std::optional<unsigned> gen, std::string entry, std::string file,
                    std::string reason) const {
        JournalRecord r;
        r.time = journal_now();
        r.event = ev;
        r.generation = gen;
        r.entry = std::move(entry);
        r.file = std::move(file);
        r.bootloader = std::string(to_string(bootloader));
        r.boot_id = boot_id;
        r.reason = std::move(reason);
        append_journal(state, r);
    }

    // Before a command's first change: a journal it cannot write stops it
    // while nothing has happened.
    void check_writable() const { check_journal_writable(state); }

    // Journals a change that already took effect. Its failure names what took
    // effect and what to run (`next`): never an error that hides a change.
    void after(const std::string& done, const std::string& next, JournalEvent ev, std::optional<unsigned> gen,
               std::string entry, std::string file, std::string reason) const {
        try {
            (*this)(ev, gen, std::move(entry), std::move(file), std::move(reason));
        } catch (const Error& e) {
            throw Error(done + ", but journaling it failed: " + e.what() + (next.empty() ? "" : "; " + next));
        }
    }
};

std::string boot_id_or_empty() {
    try {
        return current_boot_id();
    } catch (const Error&) {
        return "";
    }
}

std::optional<unsigned> gen_of(const std::string& id) {
    if (auto p = parse_entry_id(id)) return p->generation;
    return std::nullopt;
}

// The last journal event about `entry`, to journal a verdict exactly once even
// when the loader already renamed the file (a spent one-shot reads +0-1, and
// systemd-bless-boot may have blessed it first).
std::optional<JournalEvent> last_event(const std::filesystem::path& state, std::string_view entry) {
    std::optional<JournalEvent> last;
    for (const auto& r : read_journal(state).records)
        if (r.entry == entry && r.event != JournalEvent::default_ && r.event != JournalEvent::install) last = r.event;
    return last;
}

std::string file_of(const LoaderView& v, std::string_view id) {
    const auto* e = v.find(id);
    return e ? e->file : "";
}

// What the generations side of an install depends on, without parsing
// anything: link names and targets, and the identity of each toplevel's
// boot files (store paths are immutable; tests edit them in place).
std::string generations_fingerprint(const std::filesystem::path& profile) {
    std::string out;
    auto dir = profile.parent_path();
    auto prefix = profile.filename().string() + "-";
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return "no profile dir\n";
    while (auto* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.starts_with(prefix) && n.ends_with("-link")) names.push_back(std::move(n));
    }
    std::sort(names.begin(), names.end());
    char buf[4096];
    int dfd = ::dirfd(d);
    auto link = [&](const std::filesystem::path& p) {
        auto k = p.has_parent_path() ? ::readlink(p.c_str(), buf, sizeof buf)
                                     : ::readlinkat(dfd, p.c_str(), buf, sizeof buf);
        return k < 0 ? std::string("-") : std::string(buf, static_cast<std::size_t>(k));
    };
    auto stat_of = [&](const std::filesystem::path& p) {
        struct stat st {};
        if (::stat(p.c_str(), &st) != 0) return std::string(" -");
        return " " + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
               std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ino);
    };
    out += "profile " + link(profile) + "\n";
    for (const auto& n : names) {
        auto target = link(n);
        std::filesystem::path top = !target.empty() && target[0] == '/' ? std::filesystem::path(target) : dir / target;
        out += n + " " + target;
        // Store paths never change once they exist: their name is their identity.
        if (target.starts_with("/nix/store/")) {
            out += "\n";
            continue;
        }
        auto bj = stat_of(top / "boot.json");
        out += bj;
        if (bj == " -")
            for (const char* f : {"kernel", "initrd", "init", "kernel-params", "nixos-version", "specialisation"})
                out += stat_of(top / f);
        out += "\n";
    }
    ::closedir(d);
    return out;
}

constexpr const char* stamp_name = "install-stamp";

struct Stamp {
    std::string key;
    std::optional<std::string> default_entry;
    std::vector<std::string> skipped;
};

// STATE/install-stamp: "default ID" and "skip TEXT" lines, a blank line,
// then the key verbatim.
std::optional<Stamp> read_stamp(const std::filesystem::path& state) {
    std::ifstream in(state / stamp_name, std::ios::binary);
    if (!in) return std::nullopt;
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto sep = text.find("\n\n");
    if (sep == std::string::npos) return std::nullopt;
    Stamp s;
    s.key = text.substr(sep + 2);
    std::size_t pos = 0;
    while (pos < sep) {
        auto nl = text.find('\n', pos);
        if (nl == std::string::npos || nl > sep) nl = sep;
        std::string line = text.substr(pos, nl - pos);
        if (line.starts_with("default "))
            s.default_entry = line.substr(8);
        else if (line.starts_with("skip "))
            s.skipped.push_back(line.substr(5));
        pos = nl + 1;
    }
    if (s.key.empty()) return std::nullopt;
    return s;
}

std::string format_stamp(const Stamp& s) {
    std::string text = "nixboot install stamp\n";
    if (s.default_entry) text += "default " + *s.default_entry + "\n";
    for (const auto& k : s.skipped) text += "skip " + k + "\n";
    return text + "\n" + s.key;
}

}  // namespace

// "" when the backend cannot describe its inputs cheaply (no fast path).
// `generations` is generations_fingerprint(opts.profile).
static std::string install_key(const Backend& backend, const MachineOptions& opts, const std::string& generations) {
    auto fp = backend.fingerprint();
    if (fp.empty()) return {};
    // Kept verbatim (not hashed): comparing a few hundred KiB is cheaper than
    // hashing them, and there is no collision to reason about.
    return std::string(to_string(backend.kind())) + "\ntries " + std::to_string(opts.tries) + "\nkeep " +
           std::to_string(opts.keep) + "\n" + fp + generations;
}

// STATE/lock, waited for as long as the options allow.
static Lock lock_state(const MachineOptions& opts) {
    if (opts.lock_wait.count() == 0) return Lock::acquire(opts.state);
    return Lock::acquire_within(opts.state, opts.lock_wait);
}

InstallReport Machine::install() {
    auto lock = lock_state(opts_);
    const Backend::HeldReads held(backend_);  // under the lock: one reading, renewed after each change
    finish_interrupted_rollback();
    InstallReport report;
    // Fast path: nothing the install reads has changed since the last one.
    // The generations as they were before the install read them: one added
    // while it ran makes the next install's key differ, so it is installed.
    const auto generations = generations_fingerprint(opts_.profile);
    auto key = install_key(backend_, opts_, generations);
    auto stamp = read_stamp(opts_.state);
    if (!key.empty() && stamp && stamp->key == key) {
        report.default_entry = stamp->default_entry;
        report.skipped = stamp->skipped;
        return report;
    }
    report = install_unlocked();
    auto after = install_key(backend_, opts_, generations);
    if (!after.empty() && (!stamp || stamp->key != after)) {
        // Only a cache of "nothing changed": the entries are written already.
        try {
            RootDir::open_or_create(opts_.state)
                .write_atomic(stamp_name, format_stamp(Stamp{after, report.default_entry, report.skipped}), Sync::no);
        } catch (const Error& e) {
            report.sync.warnings.push_back(std::string("the entries are synced, but ") + e.what() +
                                           "; the next install reads every generation again");
        }
    }
    return report;
}

InstallReport Machine::install_unlocked() {
    // Temp files of an interrupted write in the state dir (the backend's sync
    // cleans the boot partition); safe under the lock.
    RootDir::open_or_create(opts_.state).remove_stale_temp_files("", Sync::no);
    Journaler journal{opts_.state, backend_.kind(), boot_id_or_empty()};
    InstallReport report;

    auto scan = discover_generations(opts_.profile);
    for (const auto& s : scan.skipped)
        report.skipped.push_back("generation " + std::to_string(s.number) + ": " + s.reason);
    report.skipped.insert(report.skipped.end(), scan.out_of_range.begin(), scan.out_of_range.end());
    if (scan.ok.empty())
        throw Error(
            "no usable generation beside " + opts_.profile.string() +
            (report.skipped.empty() ? std::string(" (no PROFILE-N-link found)") : ": " + report.skipped.front()));

    journal.check_writable();
    auto view = read_for_change(backend_);
    std::set<std::string> protect;
    std::string restore;  // the newest good entry, while it is damaged on disk and the sync rewrites it
    for (const auto& e : view.entries) protect.insert(e.id);

    // First run: adopt the booted (else current, else newest) generation as good,
    // and pin it before any trial entry can appear.
    if (!newest_good(view)) {
        std::optional<unsigned> pick;
        std::string why;
        if (view.booted) {
            if (auto g = gen_of(*view.booted)) {
                pick = g;
                why = "the booted";
            }
        }
        if (!pick && view.booted_toplevel) {
            // Without nixboot.entry= (a stock config) the booted init= names it.
            for (const auto& g : scan.ok)
                if (g.toplevel == *view.booted_toplevel) {
                    pick = g.number;
                    why = "the booted";
                }
        }
        if (!pick) {
            if (auto g = current_generation(opts_.profile)) {
                pick = g;
                why = "the system profile's current";
            }
        }
        if (!pick) {
            pick = scan.ok.back().number;
            why = "the newest";
        }
        auto it = std::find_if(scan.ok.begin(), scan.ok.end(), [&](const Generation& g) { return g.number == *pick; });
        if (it == scan.ok.end())
            throw Error("cannot adopt generation " + std::to_string(*pick) + " (" + why +
                        " generation) as good: it is not usable" +
                        (report.skipped.empty() ? std::string() : " (" + report.skipped.front() + ")"));
        SyncOptions first;
        first.new_tries = 0;
        first.protect = protect;
        backend_.sync(std::span<const Generation>(&*it, 1), first);
        auto id = entry_id(it->number);
        backend_.set_state(id, EntryState::good);  // an earlier crashed run may have left it a trial
        backend_.set_default(id);
        report.adopted = id;
        journal.after("adopted " + id + " as good and made it the default", "run 'nixboot install' again to finish",
                      JournalEvent::adopt, it->number, id, file_of(backend_.read(), id),
                      "first install: adopted " + why + " generation " + std::to_string(it->number) + " as good");
        view = backend_.read();
    } else if (!sort_order_trial_pending(view) && (!is_good(view, view.persistent_default) || !view.default_pinned)) {
        // The newest good entry is pinned before the sync adds trial entries
        // (also when the loader only takes it as its first entry: a first
        // install cut short after writing the adopted entry left no pin, and
        // a new trial entry would sort before it). If
        // the loader skips it (damaged on disk: the sync rewrites it), the newest
        // good entry it shows holds the pin until the rewrite, and the default
        // returns to the rewritten entry after the sync.
        const Entry* g = newest_good(view);
        if (!g->bootable) {
            restore = g->id;
            g = newest_good(view, {}, Shown::bootable);
        }
        if (g) {
            backend_.set_default(g->id);
            view = backend_.read();
        }
    }

    // Retention: newest `keep` generations, plus everything that must survive.
    std::vector<Generation> kept;
    std::set<unsigned> must;
    if (const auto* g = newest_good(view)) must.insert(g->generation);
    for (const auto& id : {view.booted, view.armed, view.persistent_default})
        if (id)
            if (auto g = gen_of(*id)) must.insert(*g);
    if (view.booted_file)
        for (const auto& e : view.entries)
            if (e.file == *view.booted_file) must.insert(e.generation);
    if (auto g = current_generation(opts_.profile)) must.insert(*g);
    if (view.booted_toplevel)  // the running system, when the loader did not name its entry
        for (const auto& g : scan.ok)
            if (g.toplevel == *view.booted_toplevel) must.insert(g.number);
    // While a trial is armed by sort order, a new counted entry would sort
    // before it and boot instead: new generations wait until it is decided.
    bool hold_new = sort_order_trial_pending(view);
    for (std::size_t i = 0; i < scan.ok.size(); ++i) {
        const auto& g = scan.ok[i];
        bool recent = opts_.keep == 0 || i + opts_.keep >= scan.ok.size();
        bool known = std::any_of(view.entries.begin(), view.entries.end(),
                                 [&](const Entry& e) { return e.generation == g.number; });
        if (hold_new && !known) {
            report.sync.warnings.push_back("generation " + std::to_string(g.number) +
                                           " is not added while the trial of " + *view.armed +
                                           " is armed by sort order; it will be after the verdict");
            continue;
        }
        if (recent || must.count(g.number)) kept.push_back(g);
    }
    SyncOptions so;
    so.new_tries = opts_.tries;
    for (const auto& id : {view.booted, view.armed, view.persistent_default})
        if (id) so.protect.insert(*id);
    if (view.booted_file)
        for (const auto& e : view.entries)
            if (e.file == *view.booted_file) so.protect.insert(e.id);
    auto held = std::move(report.sync.warnings);
    report.sync = backend_.sync(kept, so);
    report.sync.warnings.insert(report.sync.warnings.begin(), held.begin(), held.end());
    if (!report.sync.added.empty() || !report.sync.updated.empty() || !report.sync.removed.empty())
        view = backend_.read();
    if (!sort_order_trial_pending(view)) {
        std::string target;
        const Entry* back = restore.empty() ? nullptr : view.find(restore);
        if (back && back->state == EntryState::good && back->bootable)
            target = restore;
        else if (is_good(view, view.persistent_default))
            target = *view.persistent_default;
        else if (const auto* g = newest_good(view, {}, Shown::bootable))
            target = g->id;
        if (!target.empty()) {
            backend_.set_default(target);
            view = backend_.read();
        }
    }
    report.default_entry = view.persistent_default;
    if (!report.sync.removed.empty() || report.sync.garbage_left) report.gc = backend_.collect_garbage();
    if (!report.sync.added.empty() || !report.sync.removed.empty() || !report.sync.updated.empty())
        journal.after(
            "the entries are synced (" + std::to_string(report.sync.added.size()) + " added, " +
                std::to_string(report.sync.removed.size()) + " removed; default " +
                report.default_entry.value_or("(none)") + ")",
            "nothing more to run; the journal lacks its 'install' record", JournalEvent::install, std::nullopt, "", "",
            std::to_string(report.sync.added.size()) + " added, " + std::to_string(report.sync.updated.size()) +
                " updated, " + std::to_string(report.sync.removed.size()) + " removed");
    return report;
}

TryReport Machine::try_generation(unsigned generation, const TryOptions& opts) {
    auto lock = lock_state(opts_);
    const Backend::HeldReads held(backend_);  // under the lock: one reading, renewed after each change
    Journaler journal{opts_.state, backend_.kind(), boot_id_or_empty()};
    auto view = read_for_change(backend_);
    auto id = entry_id(generation);
    const auto* e = view.find(id);
    if (!e) {
        auto scan = discover_generations(opts_.profile);
        for (const auto& s : scan.skipped)
            if (s.number == generation)
                throw Error("generation " + std::to_string(generation) + " is not usable: " + s.reason);
        bool exists =
            std::any_of(scan.ok.begin(), scan.ok.end(), [&](const Generation& g) { return g.number == generation; });
        if (exists)
            throw Error("generation " + std::to_string(generation) +
                        " has no boot entry yet; run 'nixboot install' first");
        throw Error("unknown generation " + std::to_string(generation) + " (no " +
                    generation_link(opts_.profile, generation).string() + ")");
    }
    if (view.persistent_default == id)
        throw Error("generation " + std::to_string(generation) + " is already the default (" + e->file +
                    "); nothing to try");
    if (sort_order_trial_pending(view) && view.armed != id)
        throw Error("a trial of " + q(*view.armed) +
                    " is already armed by sort order; decide it first (mark-good/mark-bad)");
    // The fallback: the good persistent default (pinned first if it is not).
    std::string fallback;
    if (is_good(view, view.persistent_default))
        fallback = *view.persistent_default;
    else if (const auto* g = newest_good(view, id, Shown::bootable))
        fallback = g->id;
    if (fallback.empty() || fallback == id)
        throw Error("refusing to try generation " + std::to_string(generation) +
                    ": no other good entry to fall back to");
    unsigned tries = opts.tries.value_or(opts_.tries);
    if (tries == 0) throw UsageError("--tries must be at least 1");
    journal.check_writable();
    if (!sort_order_trial_pending(view)) backend_.set_default(fallback);  // pinned before anything is armed
    ArmOptions ao;
    ao.tries = tries;
    ao.accept_risk = opts.accept_risk;
    auto mode = backend_.arm(id, ao);
    auto after = backend_.read();
    std::string how = std::string(to_string(mode)) + " trial with " + std::to_string(tries) +
                      (tries == 1 ? " try" : " tries") + "; fallback " + fallback;
    journal.after(id + " is armed (" + how + ") and boots at the next reboot",
                  "to cancel it run 'nixboot mark-bad " + std::to_string(generation) +
                      "' (it can be tried again later); no reboot was started",
                  JournalEvent::arm, generation, id, file_of(after, id), "armed a " + how);
    TryReport r{id, mode, tries, fallback};
    if (opts.reboot == Reboot::yes) {
        const std::vector<std::string> argv = command_from_env("NIXBOOT_REBOOT_COMMAND", opts_.reboot_command);
        int status = 0;
        try {
            status = run_command(argv);
        } catch (const Error& failure) {
            throw Error(std::string("the trial is armed, but ") + failure.what() + "; reboot to start it");
        }
        if (status != 0)
            throw Error("the trial is armed, but '" + argv.front() + "' failed (exit status " + std::to_string(status) +
                        "); reboot to start it");
    }
    return r;
}

void Machine::mark_good(std::string_view entry, std::string_view reason) {
    auto lock = lock_state(opts_);
    const Backend::HeldReads held(backend_);  // under the lock: one reading, renewed after each change
    Journaler journal{opts_.state, backend_.kind(), boot_id_or_empty()};
    auto view = read_for_change(backend_);
    const auto* e = view.find(entry);
    if (!e) throw Error("no entry " + q(entry) + " to mark good");
    std::string id(entry);
    unsigned gen = e->generation;
    journal.check_writable();
    auto last = last_event(opts_.state, id);
    bool was_good = e->state == EntryState::good;
    // The verdict is journaled (on the root file system) before the loader
    // changes: a power cut anywhere in the promotion leaves a `good` record as
    // the journal's last word, and the next boot finishes the promotion
    // (finish_interrupted_promotion) instead of deciding a second time.
    if (last != JournalEvent::good && (!was_good || (last && last != JournalEvent::promote)))
        journal(JournalEvent::good, gen, id, e->file, std::string(reason));
    bool moved = false;
    try {
        if (!was_good) backend_.set_state(id, EntryState::good);
        if (view.armed == id) backend_.disarm();
        view = backend_.read();
        // An entry the loader skips cannot become the default (set_default
        // refuses): a power cut during a rename on FAT can leave the blessed name
        // empty (VM scenario systemd-boot:7). Its generation is in the profile, so
        // the entries are rewritten first.
        if (const Entry* now = view.find(id); now && !now->bootable) {
            install_unlocked();
            view = backend_.read();
        }
        moved = view.persistent_default != id;
        backend_.set_default(id);  // idempotent; also pins a default left unpinned by a sort-order trial
        if (current_generation(opts_.profile) != gen) {
            switch_profile(opts_.profile, gen);
            moved = true;
        }
    } catch (const Error& failure) {
        throw Error("journaled " + id + " good, but promoting it failed: " + failure.what() +
                    "; run 'nixboot mark-good " + std::to_string(gen) +
                    "' again to finish (the next boot's check also does)");
    }
    if (moved)
        journal.after(id + " is good and the default, and the system profile is generation " + std::to_string(gen),
                      "nothing more to run; the journal lacks its 'promote' record", JournalEvent::promote, gen, id,
                      file_of(backend_.read(), id), "default and system profile now generation " + std::to_string(gen));
}

void Machine::mark_bad(std::string_view entry, std::string_view reason) {
    auto lock = lock_state(opts_);
    const Backend::HeldReads held(backend_);  // under the lock: one reading, renewed after each change
    Journaler journal{opts_.state, backend_.kind(), boot_id_or_empty()};
    auto view = read_for_change(backend_);
    const auto* e = view.find(entry);
    if (!e) throw Error("no entry " + q(entry) + " to mark bad");
    std::string id(entry);
    unsigned gen = e->generation;
    if (!newest_good(view, id)) throw Error("refusing to mark " + q(id) + " bad: it is the only good entry");
    const auto* other = newest_good(view, id, Shown::bootable);
    if (!other) {
        // Every other good entry is one the loader skips (damaged on disk): they
        // are rewritten before the default moves to one of them.
        install_unlocked();
        view = read_for_change(backend_);
        e = view.find(entry);
        if (!e) throw Error("no entry " + q(entry) + " to mark bad");
        other = newest_good(view, id, Shown::bootable);
        if (!other)
            throw Error("refusing to mark " + q(id) +
                        " bad: no other good entry the loader can boot, even after rewriting the entries");
    }
    std::string fallback = other->id;
    journal.check_writable();
    // Move the default away first so the loader never defaults to a bad entry.
    if (view.persistent_default == id || !is_good(view, view.persistent_default) || sort_order_trial_pending(view)) {
        std::string target = is_good(view, view.persistent_default) && view.persistent_default != id
                                 ? *view.persistent_default
                                 : fallback;
        backend_.set_default(target);
    }
    bool was_bad = e->state == EntryState::bad;
    if (view.armed == id) {
        backend_.disarm();
        // GRUB shows a trial whose tries are spent as bad only while grubenv
        // still arms it: once disarmed, what it keeps on disk (a trial) shows.
        auto disarmed = backend_.read();
        const auto* now = disarmed.find(id);
        was_bad = now && now->state == EntryState::bad;
    }
    auto last = last_event(opts_.state, id);
    if (!was_bad) backend_.set_state(id, EntryState::bad);
    view = backend_.read();
    if (!sort_order_trial_pending(view))
        backend_.set_default(is_good(view, view.persistent_default) ? *view.persistent_default : fallback);
    view = backend_.read();
    if (!was_bad || last != JournalEvent::bad)
        journal.after(id + " is marked bad and the default is " + view.persistent_default.value_or("(none)"),
                      "nothing more to run; the journal lacks its 'bad' record", JournalEvent::bad, gen, id,
                      file_of(view, id), std::string(reason));
}

std::string Machine::rollback(std::string_view reason) {
    auto lock = lock_state(opts_);
    const Backend::HeldReads held(backend_);  // under the lock: one reading, renewed after each change
    Journaler journal{opts_.state, backend_.kind(), boot_id_or_empty()};
    auto view = read_for_change(backend_);
    if (sort_order_trial_pending(view))
        throw Error("a trial of " + q(*view.armed) + " is armed by sort order; decide it first (mark-good/mark-bad)");
    const Entry* cur = view.persistent_default ? view.find(*view.persistent_default) : nullptr;
    unsigned below = cur ? cur->generation : ~0u;
    const Entry* prev = nullptr;
    for (const auto& e : view.entries)
        if (e.state == EntryState::good && e.specialisation.empty() && e.generation < below &&
            (!prev || e.generation > prev->generation))
            prev = &e;
    if (!prev)
        throw Error("no good generation older than " +
                    (cur ? std::to_string(cur->generation) : std::string("the default")) + " to roll back to");
    std::string id = prev->id;
    unsigned gen = prev->generation;
    std::string file = prev->file;
    // Journaled first (the intent): a power cut between the default and the
    // profile leaves it as the journal's last word, and the next install
    // finishes the rollback (finish_interrupted_rollback).
    journal(JournalEvent::rollback, gen, id, file,
            reason.empty() ? "rolled back from generation " + (cur ? std::to_string(cur->generation) : std::string("?"))
                           : std::string(reason));
    try {
        if (view.armed) backend_.disarm();
        backend_.set_default(id);
        if (current_generation(opts_.profile) != gen) switch_profile(opts_.profile, gen);
    } catch (const Error& failure) {
        throw Error("journaled the rollback to " + id + ", but it failed: " + failure.what() +
                    "; run 'nixboot install' to finish it");
    }
    return id;
}

void Machine::finish_interrupted_rollback() {
    const std::optional<JournalRecord> record = last_journal_record(opts_.state);
    if (!record) return;
    const JournalRecord& last = *record;
    if (last.event != JournalEvent::rollback || !last.generation || last.entry.empty()) return;
    auto view = backend_.read();
    const Entry* target = view.find(last.entry);
    if (!target || target->state != EntryState::good) return;
    const std::optional<unsigned> profile = current_generation(opts_.profile);
    bool profile_behind = false;
    if (profile && *profile > *last.generation)
        for (const auto& e : view.entries) profile_behind |= e.generation == *profile && e.specialisation.empty();
    if (view.persistent_default != last.entry && !sort_order_trial_pending(view) && !view.armed) {
        spdlog::info("finishing the rollback to {} a power cut stopped: the default", last.entry);
        backend_.set_default(last.entry);
    }
    if (profile_behind) {
        spdlog::info("finishing the rollback to {} a power cut stopped: the system profile", last.entry);
        switch_profile(opts_.profile, *last.generation);
    }
}

Status Machine::status() const {
    Status s;
    s.view = backend_.read();
    s.profile_generation = current_generation(opts_.profile);
    return s;
}

JournalContents Machine::history() const { return read_journal(opts_.state); }

std::optional<std::string> Machine::booted_entry() const { return backend_.read().booted; }

}  // namespace nixboot
