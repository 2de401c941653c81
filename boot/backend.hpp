// The bootloader seam: what differs between systemd-boot and GRUB.
//
// A Backend reads the loader's own view of the entries (files, counters,
// EFI variables or grubenv) and performs the primitive writes the state
// machine (boot/machine.hpp) composes into transitions. Every write is
// idempotent: calling it again after a crash at any point finishes the job.
// Backends never print; they log at debug level and throw nixboot::Error
// (boot/util/error.hpp) with the file or variable and the cause.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

struct Generation;  // boot/generations.hpp

enum class Bootloader { systemd_boot, grub };
std::string_view to_string(Bootloader b);
// "systemd-boot" | "grub"; nullopt otherwise.
std::optional<Bootloader> parse_bootloader(std::string_view text);

enum class EntryState { good, trial, bad };
std::string_view to_string(EntryState s);  // "good" | "trial" | "bad"

// Entry IDs: "nixos-generation-N" and "nixos-generation-N-specialisation-NAME"
// (docs/contracts.md). No counter, no ".conf".
std::string entry_id(unsigned generation, std::string_view specialisation = {});
struct ParsedEntryId {
    unsigned generation = 0;
    std::string specialisation;  // empty: the generation's main entry
};
// Strict inverse of entry_id(); nullopt for anything else.
std::optional<ParsedEntryId> parse_entry_id(std::string_view id);

// One boot entry as the loader sees it.
struct Entry {
    std::string id;  // entry_id(generation, specialisation)
    unsigned generation = 0;
    std::string specialisation;  // empty for the main entry
    EntryState state = EntryState::good;
    unsigned tries_left = 0;  // trial: > 0; bad: 0
    unsigned tries_done = 0;
    std::string file;      // where the loader reads it, relative to the boot root
                           // (systemd-boot: "loader/entries/ID+1-0.conf")
    std::string title;     // "NixOS"
    std::string version;   // "Generation 5 NixOS 24.05, Built on 2024-05-01"
    bool bootable = true;  // false: the loader skips the entry (say, an empty file a
                           // power cut left), so it is never the default
};

// How a trial is armed for the next boot.
enum class ArmMode {
    one_shot,    // LoaderEntryOneShot / grubenv: the loader boots it once, then the default
    sort_order,  // no writable EFI variables: default unpinned, the trial sorts first
                 // and drops last once its tries are spent (design.md)
    preferred,   // LoaderEntryPreferred (systemd-boot 260+): booted while it has tries
                 // left, skipped once bad; the good default stays pinned
};
std::string_view to_string(ArmMode m);  // "one-shot" | "sort-order" | "preferred"

// The loader's state, read fresh from disk and variables.
struct LoaderView {
    Bootloader bootloader = Bootloader::systemd_boot;
    std::string loader_info;                 // "systemd-boot 252.39", "" if unknown
    std::vector<Entry> entries;              // in the loader's menu order (default choice order)
    std::optional<std::string> booted;       // entry ID that booted this time, if the loader says
    std::optional<std::string> booted_file;  // file the loader reports as booted (LoaderBootCountPath), relative
    std::optional<std::filesystem::path> booted_toplevel;  // the toplevel of init= on the command line,
                                                           // when the loader did not name the entry (stock GRUB config)
    std::optional<std::string> armed;                      // entry ID armed as a trial for the next boot
    std::optional<ArmMode> armed_mode;
    std::optional<std::string> persistent_default;  // entry the loader boots when nothing is armed
    bool default_pinned = true;            // false: nothing names the default (systemd-boot takes its first entry)
    std::optional<std::string> next_boot;  // entry the loader boots next, with its real precedence
    bool vars_writable = false;            // one-shot/default variables can be written
    std::vector<std::string> warnings;     // duplicate counters, foreign or unparsable files, stale variables
    std::vector<std::string> blocking;     // problems that stop every change, each with its fix (also in warnings)

    const Entry* find(std::string_view id) const;  // nullptr if absent
};

struct SyncOptions {
    unsigned new_tries = 1;         // tries of entries that appear now (0: enter as good)
    std::set<std::string> protect;  // entry IDs never removed even without a generation
                                    // (booted, LoaderBootCountPath, armed trial)
};

struct SyncResult {
    std::vector<std::string> added;     // entry IDs written for the first time
    std::vector<std::string> updated;   // entry IDs whose contents changed (kept their counter)
    std::vector<std::string> removed;   // entry IDs removed (their generation is gone or not kept)
    std::vector<std::string> warnings;  // things reported but left alone
    // Copies no entry names may be left (an interrupted run's, kept while
    // the old grub.cfg still named them): collect_garbage() has work.
    bool garbage_left = false;
};

struct GcResult {
    std::vector<std::string> removed;  // files removed, relative to the boot root
    std::size_t kept_for_cfg = 0;      // GRUB: unreferenced by the state, kept because grub.cfg on disk names them
};

struct ArmOptions {
    unsigned tries = 1;
    bool accept_risk = false;  // GRUB: arm even where the env block is not writable by GRUB (G5)
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual Bootloader kind() const = 0;

    // The loader's current state. Throws on unreadable state; odd but
    // harmless things go to LoaderView::warnings.
    virtual LoaderView read() const = 0;

    // Entries for exactly `generations` (plus opts.protect): new entries enter
    // as trials with opts.new_tries (good when 0), known entries keep their
    // state and counter, entries of other generations are removed. Shared
    // kernels/initrds are copied in once. Writes nothing when nothing changed.
    virtual SyncResult sync(std::span<const Generation> generations, const SyncOptions& opts) = 0;

    // Makes entry `id` a trial with opts.tries tries left and has the loader
    // boot it next; returns how. Refuses (Error) what it cannot make safe.
    virtual ArmMode arm(std::string_view id, const ArmOptions& opts) = 0;

    // Clears any armed trial (one-shot variable / grubenv trial); idempotent.
    virtual void disarm() = 0;

    // Sets entry `id` to good (counter dropped) or bad (tries left 0);
    // already in that state counts as done. `trial` is not accepted here (use arm).
    virtual void set_state(std::string_view id, EntryState state) = 0;

    // Makes `id` the persistent default (loader.conf, stale EFI default,
    // grubenv) and ends a sort-order arm; idempotent. `id` must be good.
    virtual void set_default(std::string_view id) = 0;

    // Removes kernels/initrds (and other files the backend owns) that no
    // entry references any more.
    virtual GcResult collect_garbage() = 0;

    // A cheap description of everything read() and sync() depend on (file
    // names, sizes, mtimes, variables), or "" when the backend offers none.
    // Machine::install skips all work when it equals the last install's.
    virtual std::string fingerprint() const { return {}; }

    // While a HeldReads lives, read() and the backend's changes may reuse one
    // reading of the loader's files and variables, which every change the
    // backend makes drops. Only for a caller that holds STATE/lock for the
    // guard's whole life: then no other nixboot changes the loader's files,
    // and the loader itself is not running. Without one, every read() reads.
    class HeldReads {
    public:
        explicit HeldReads(const Backend& b) : backend_(&b) { b.hold_reads(true); }
        ~HeldReads() { backend_->hold_reads(false); }
        HeldReads(const HeldReads&) = delete;
        HeldReads& operator=(const HeldReads&) = delete;

    private:
        const Backend* backend_;
    };

protected:
    // Counts holders (true) and releases (false); a backend that keeps no
    // reading ignores it.
    virtual void hold_reads(bool /*held*/) const {}
};

// Where a backend finds things. Backend-specific config keys ("grub-*")
// arrive in `extra` untouched.
struct BackendOptions {
    std::filesystem::path esp = "/boot";
    // systemd-boot's XBOOTLDR partition (the Boot Loader Specification's
    // extended boot loader partition), where the loader finds more entries;
    // nullopt: none. nixboot reads it and never writes there.
    std::optional<std::filesystem::path> xbootldr;
    std::filesystem::path efivars = "/sys/firmware/efi/efivars";
    std::filesystem::path state = "/var/lib/nixboot";
    std::map<std::string, std::string> extra;
};

// The systemd-boot backend lives in boot/sdboot.hpp; the GRUB backend
// provides `std::unique_ptr<Backend> make_grub_backend(const BackendOptions&)`
// in boot/grub/backend.hpp (picked up by make_backend when that header exists).
// `which` empty: detect from LoaderInfo and the ESP's layout.
std::unique_ptr<Backend> make_backend(std::optional<Bootloader> which, const BackendOptions& opts);

}  // namespace nixboot
