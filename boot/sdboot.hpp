// The systemd-boot backend: Boot Loader Specification Type #1 entries with
// boot counters in their names, loader.conf, and the Boot Loader Interface
// EFI variables (LoaderEntryOneShot, LoaderEntryDefault, LoaderBootCountPath).
//
// The pure functions below reproduce systemd-boot's own decisions (entry
// IDs, sort order, default choice) so that the state machine and the tests
// can compute what the firmware will boot without running it.
#pragma once

#include "boot/backend.hpp"
#include "boot/counter.hpp"

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nixboot {

class RootDir;  // boot/util/dir.hpp

// How systemd-boot derives an entry's ID from its file name.
enum class IdScheme {
    with_counter,     // systemd-boot <= 257: the file name as it was before this boot's decrement
    without_counter,  // systemd-boot >= 258: the counter is stripped
};

// The version number in LoaderInfo ("systemd-boot 252.39-1~deb12u1" -> 252);
// nullopt if it is not systemd-boot or has no number.
std::optional<unsigned> systemd_boot_version(std::string_view loader_info);
// with_counter for <= 257 and when unknown (an unmatched one-shot falls back
// to the good default, never to another entry); without_counter for >= 258.
IdScheme id_scheme_for(std::string_view loader_info);

// The loader's ID for entry file `file_name` ("nixos-generation-5+1.conf"),
// lower-cased as systemd-boot does.
std::string loader_entry_id(std::string_view file_name, IdScheme scheme);

// The LoaderEntryOneShot value that selects entry file `file_name`
// ("nixos-generation-5+3-0.conf") under either ID rule: "<stem>[+.]*conf",
// lower-cased, glob characters in the stem escaped. It matches the ID with the
// counter ("nixos-generation-5+3-0.conf": systemd-boot up to 257.x before
// systemd PR #38897, and 258's release candidates) and without it
// ("nixos-generation-5.conf": 257 stable updates that took the PR, 258.x,
// 259+), and no ID of another generation or specialisation ("-50", "-5-...").
std::string one_shot_pattern(std::string_view file_name);

// systemd-boot's efi_fnmatch: '*', '?', '[a-z]' (no negation), '\\' escapes.
bool efi_fnmatch(std::string_view pattern, std::string_view text);

// systemd's strverscmp_improved: <0, 0, >0 like strcmp, "newer" is greater.
int strverscmp_improved(std::string_view a, std::string_view b);

// What systemd-boot needs from one entry to sort it.
struct SortItem {
    std::string file_name;           // "nixos-generation-5+1.conf"
    std::optional<Counter> counter;  // from the name
    std::optional<std::string> sort_key;
    std::optional<std::string> machine_id;
    std::optional<std::string> version;
    // Where the entry lives when it is not a Type #1 entry in the ESP's
    // loader/entries (the directory, for messages): a Type #2 UKI in
    // EFI/Linux, or an entry on the XBOOTLDR partition. Never nixboot's own.
    std::string origin;
    std::string id_suffix;  // a UKI profile after the first: "@ID"
};
// The loader's ID for `item`: loader_entry_id of its file name, then its
// profile suffix (systemd-boot lowercases both).
std::string sort_item_id(const SortItem& item, IdScheme scheme);
// Sorts into systemd-boot's menu order (entries with 0 tries left last;
// sort-key, machine-id, version descending; then the ID descending; ties:
// more tries left first, fewer done first).
void sort_like_systemd_boot(std::vector<SortItem>& items, IdScheme scheme);

// The inputs of systemd-boot's default choice.
struct DefaultInputs {
    std::optional<std::string> one_shot;        // LoaderEntryOneShot
    std::optional<std::string> efi_preferred;   // LoaderEntryPreferred (only where the loader has it: 260+)
    std::optional<std::string> conf_preferred;  // loader.conf `preferred` (the same)
    std::optional<std::string> efi_default;     // LoaderEntryDefault
    std::optional<std::string> conf_default;    // loader.conf `default`
    std::optional<std::string> last_booted;     // LoaderEntryLastBooted (for "@saved")
};
// A value of loader.conf or of an entry as systemd-boot reads it
// (src/boot/boot.c line_get_key_value, 252 to 262): a value that starts and
// ends with '"' loses both quotes ("\"" alone becomes empty); nothing else is
// unescaped.
std::string_view loader_value(std::string_view value);
// Index into `sorted` of the entry systemd-boot boots: the first entry whose
// ID matches the one-shot, else the first entry not marked bad (0 tries
// left) that the EFI, then the loader.conf preferred matches, else the EFI
// default, else the loader.conf default (globs; these may name a bad entry),
// else the first entry; nullopt if there are no entries.
std::optional<std::size_t> pick_default_entry(const std::vector<SortItem>& sorted, const DefaultInputs& in,
                                              IdScheme scheme);

// A content-derived file name under EFI/nixos for a kernel/initrd whose
// SHA-256 is `sha256_hex`: "EFI/nixos/<first 32 hex>-<kind>.efi".
std::string content_file_name(std::string_view sha256_hex, std::string_view kind);

// The BLS text of entry `id` for `generation` (specialisation `spec` or the
// main system when empty), given where its kernel/initrd live on the ESP.
struct EntryFiles {
    std::string kernel;                 // "/EFI/nixos/<hash>-linux.efi"
    std::optional<std::string> initrd;  // "/EFI/nixos/<hash>-initrd.efi"
};
std::string format_generation_entry(const Generation& generation, std::string_view spec, const EntryFiles& files);

class SdBootBackend final : public Backend {
public:
    explicit SdBootBackend(const BackendOptions& opts);

    Bootloader kind() const override { return Bootloader::systemd_boot; }
    LoaderView read() const override;
    SyncResult sync(std::span<const Generation> generations, const SyncOptions& opts) override;
    ArmMode arm(std::string_view id, const ArmOptions& opts) override;
    void disarm() override;
    void set_state(std::string_view id, EntryState state) override;
    void set_default(std::string_view id) override;
    GcResult collect_garbage() override;
    std::string fingerprint() const override;

protected:
    void hold_reads(bool held) const override;

private:
    struct Scanned;
    // The loader's files and variables: the held reading while there is one
    // (see Backend::HeldReads), else read now.
    std::shared_ptr<const Scanned> scan() const;
    Scanned scan_now() const;
    // Drops the held reading (not the entries' texts, which are checked by
    // their identity) when it goes out of scope: first in every method that
    // changes the ESP or the variables, however it leaves.
    struct Forget {
        const SdBootBackend& backend;
        ~Forget();
    };
    struct Held;
    struct EntryText;
    // Entry file `name` in the entries directory `entries`: while reads are
    // held and its identity is unchanged, as read before; else read and
    // parsed now. nullopt if it is gone; throws Error if it cannot be read.
    std::optional<EntryText> read_entry(const RootDir& entries, const std::string& name) const;
    // Reads the names of one entry (`idx`, more than one) as a torn rename.
    static void settle_torn_rename(Scanned& s, const std::string& stem, std::vector<std::size_t>& idx,
                                   const RootDir& esp);
    // The loader's entries that are not nixboot's to write, added to `s`
    // (Scanned::File::origin): the Type #2 UKIs in `root`'s EFI/Linux, and
    // the Type #1 entries of a partition other than the ESP (XBOOTLDR).
    static void add_type2_entries(Scanned& s, const RootDir& root);
    static void add_foreign_type1_entries(Scanned& s, const RootDir& root);
    // scan(), refusing (with what to run) when a variable that decides what
    // boots cannot be read: a change could not be reasoned about.
    std::shared_ptr<const Scanned> scan_for_change() const;
    // Removes nixboot's stale temp files and unreferenced kernel/initrd copies.
    void remove_leftovers();

    BackendOptions opts_;
    mutable unsigned holds_ = 0;
    mutable std::shared_ptr<Held> held_;  // while holds_ > 0
};

}  // namespace nixboot
