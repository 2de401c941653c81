// The state machine over the real systemd-boot backend, on temporary
// directories, with systemd-boot's boot-time behaviour modelled by Rig::boot().
#include "boot/machine.hpp"

#include "boot/efivars.hpp"
#include "boot/journal.hpp"
#include "boot/util/error.hpp"
#include "boot/util/lock.hpp"
#include "boot/util/utf16.hpp"
#include "tests/cli/rig.hpp"

#include "tests/catch.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>

#include <csignal>

using namespace nixboot;
using nixboot::test::Rig;
using Files = std::vector<std::string>;

namespace {

struct Setup {
    Rig rig;
    SdBootBackend backend;
    Machine machine;
    explicit Setup(unsigned gens = 3, std::string info = "systemd-boot 252.39-1~deb12u1", unsigned current = 0,
                   unsigned tries = 1, unsigned keep = 0)
        : rig(gens, std::move(info), current),
          backend(rig.backend_options()),
          machine(backend, rig.machine_options(tries, keep)) {}
};

// `s` as a JSON string literal (quotes, backslashes and newlines escaped).
std::string json_quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out + "\"";
}

std::vector<JournalEvent> events(const Rig& rig) {
    std::vector<JournalEvent> out;
    for (const auto& r : read_journal(rig.state).records) out.push_back(r.event);
    return out;
}

}  // namespace

TEST_CASE("first install adopts the current generation, the rest enter as trials, default pinned (G1)") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    auto report = s.machine.install();
    CHECK(report.adopted == std::optional<std::string>("nixos-generation-2"));
    CHECK(s.rig.entries() ==
          Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf", "nixos-generation-3+1-0.conf"});
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    auto v = s.backend.read();
    CHECK(v.persistent_default == std::optional<std::string>("nixos-generation-2"));
    CHECK(v.next_boot == v.persistent_default);
    CHECK_FALSE(v.armed);
    // One kernel and one initrd per distinct content.
    CHECK(std::distance(std::filesystem::directory_iterator(s.rig.esp / "EFI/nixos"), {}) == 6);
    CHECK(events(s.rig) == std::vector<JournalEvent>{JournalEvent::adopt, JournalEvent::install});
    auto text = test::read_file(s.rig.esp / "loader/entries/nixos-generation-2.conf");
    CHECK(text.find("title NixOS\n") != std::string::npos);
    CHECK(text.find("version Generation 2 NixOS 24.05 (Linux 6.6.2), Built on ") != std::string::npos);
    CHECK(text.find(" nixboot.entry=nixos-generation-2\n") != std::string::npos);
    CHECK(text.find("options init=" + (s.rig.store / "system-2").string() + "/init loglevel=4 gen=2 ") !=
          std::string::npos);
}

TEST_CASE("a no-op install writes nothing, a new generation writes only its entry") {
    Setup s(5);
    s.machine.install();
    auto before = s.rig.snapshot();
    reset_io_stats();
    auto r = s.machine.install();
    auto io = io_stats();
    CHECK(io.writes == 0);
    CHECK(io.renames == 0);
    CHECK(io.removes == 0);
    CHECK(r.sync.added.empty());
    CHECK(s.rig.snapshot() == before);

    test::make_generation(s.rig.store, s.rig.profile, 6);
    reset_io_stats();
    r = s.machine.install();
    io = io_stats();
    CHECK(r.sync.added == Files{"nixos-generation-6"});
    // entry + kernel + initrd, the journal line; the copy cache and the install
    // stamp in the state dir; each atomic write is one rename (the journal is appended).
    CHECK(io.writes == 6);
    CHECK(io.renames == 5);
    CHECK(s.rig.pinned_good_default() == "nixos-generation-5");
}

TEST_CASE("shared kernels are copied once under content names") {
    Setup s(2);
    // generation 3 boots exactly generation 2's kernel and initrd
    auto top3 = test::make_generation(s.rig.store, s.rig.profile, 3);
    auto top2 = s.rig.store / "system-2";
    std::filesystem::copy_file(top2 / "kernel-file", top3 / "kernel-file",
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(top2 / "initrd-file", top3 / "initrd-file",
                               std::filesystem::copy_options::overwrite_existing);
    s.machine.install();
    CHECK(std::distance(std::filesystem::directory_iterator(s.rig.esp / "EFI/nixos"), {}) == 4);
    auto e2 = test::read_file(s.rig.esp / "loader/entries/nixos-generation-2.conf");
    auto e3 = test::read_file(s.rig.esp / "loader/entries/nixos-generation-3+1-0.conf");
    auto linux_of = [](const std::string& t) {
        auto p = t.find("linux ");
        return t.substr(p, t.find('\n', p) - p);
    };
    CHECK(linux_of(e2) == linux_of(e3));
    CHECK(linux_of(e2).find("linux /EFI/nixos/") == 0);
}

TEST_CASE("try arms a one-shot matching the trial under either ID rule on systemd-boot 252, bless promotes (G1, G3)") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    auto r = s.machine.try_generation(3, {});
    CHECK(r.mode == ArmMode::one_shot);
    CHECK(r.fallback == "nixos-generation-2");
    CHECK(s.rig.var(efivar_name::loader_entry_oneshot) == std::optional<std::string>("nixos-generation-3[+.]*conf"));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    auto v = s.backend.read();
    CHECK(v.next_boot == std::optional<std::string>("nixos-generation-3"));
    CHECK(v.armed == std::optional<std::string>("nixos-generation-3"));

    CHECK(s.rig.boot() == "nixos-generation-3+0-1.conf");
    CHECK_FALSE(s.rig.var(efivar_name::loader_entry_oneshot));
    CHECK(s.machine.booted_entry() == std::optional<std::string>("nixos-generation-3"));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");  // G1 while the trial runs

    s.machine.mark_good("nixos-generation-3", "checks passed");
    CHECK(s.rig.entries() ==
          Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf", "nixos-generation-3.conf"});
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(current_generation(s.rig.profile) == std::optional<unsigned>(3));
    auto ev = events(s.rig);
    CHECK(ev == std::vector<JournalEvent>{JournalEvent::adopt, JournalEvent::install, JournalEvent::arm,
                                          JournalEvent::good, JournalEvent::promote});
    // Re-running the promotion (e.g. after a crash) changes nothing.
    auto before = s.rig.snapshot();
    reset_io_stats();
    s.machine.mark_good("nixos-generation-3", "checks passed");
    CHECK(io_stats().writes == 0);
    CHECK(io_stats().renames == 0);
    CHECK(s.rig.snapshot() == before);
    // And the next power-on boots the new default.
    CHECK(s.rig.boot() == "nixos-generation-3.conf");
}

TEST_CASE("systemd-boot 258 boots the one-shot trial, whose ID has no counter") {
    Setup s(3, "systemd-boot 258", 2);
    s.machine.install();
    s.machine.try_generation(3, TryOptions{1, Reboot::no, false});
    CHECK(s.rig.entries() ==
          Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf", "nixos-generation-3+1-0.conf"});
    CHECK(s.rig.var(efivar_name::loader_entry_oneshot) == std::optional<std::string>("nixos-generation-3[+.]*conf"));
    CHECK(s.rig.boot() == "nixos-generation-3+0-1.conf");
}

// systemd-boot deletes LoaderEntryOneShot as it reads it: with a one-shot, a
// second try would never come (the pinned default wins). More than one try is
// armed by sort order, which the loader follows on every boot.
TEST_CASE(
    "systemd-boot with --tries 3 and writable EFI variables: three boots of the trial, then the good default (G2)") {
    for (const std::string info : {"systemd-boot 252.39-1~deb12u1", "systemd-boot 262.1-1"}) {
        INFO(info);
        Setup s(3, info, 2);
        s.machine.install();
        EfiVars(s.rig.efivars).set_string(efivar_name::loader_entry_default, "nixos-generation-2.conf");
        auto r = s.machine.try_generation(3, TryOptions{3, Reboot::no, false});
        CHECK(r.mode == ArmMode::sort_order);
        CHECK_FALSE(s.rig.var(efivar_name::loader_entry_oneshot));
        CHECK_FALSE(s.rig.var(efivar_name::loader_entry_default));
        CHECK(s.backend.read().armed == std::optional<std::string>("nixos-generation-3"));
        CHECK(s.rig.boot() == "nixos-generation-3+2-1.conf");
        CHECK(s.rig.boot() == "nixos-generation-3+1-2.conf");
        CHECK(s.rig.boot() == "nixos-generation-3+0-3.conf");
        CHECK(s.rig.boot() == "nixos-generation-2.conf");  // spent: sorted last, the good fallback first
        s.machine.mark_bad("nixos-generation-3", "trial boot of generation 3 did not reach a verdict");
        CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    }
}

// systemd-boot 260 added `preferred`, which skips an entry once it is marked
// bad: N tries with the good default pinned the whole time (G1), and no
// refusal when the trial sorts after a good entry.
TEST_CASE(
    "systemd-boot 260+ with --tries 3: the trial is the preferred entry, the good default stays pinned (G1, "
    "G2)") {
    Setup s(3, "systemd-boot 262.1-1", 3);
    s.rig.set_features(Rig::features_262);
    s.machine.install();  // generation 3 good and the default; generation 2 sorts after it
    auto r = s.machine.try_generation(2, TryOptions{3, Reboot::no, false});
    CHECK(r.mode == ArmMode::preferred);
    CHECK(r.fallback == "nixos-generation-3");
    CHECK(s.rig.var(efivar_name::loader_entry_preferred) == std::optional<std::string>("nixos-generation-2[+.]*conf"));
    CHECK_FALSE(s.rig.var(efivar_name::loader_entry_oneshot));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
    auto v = s.backend.read();
    CHECK(v.armed == std::optional<std::string>("nixos-generation-2"));
    CHECK(v.armed_mode == std::optional<ArmMode>(ArmMode::preferred));
    CHECK(v.persistent_default == std::optional<std::string>("nixos-generation-3"));
    CHECK(v.next_boot == std::optional<std::string>("nixos-generation-2"));
    CHECK(s.rig.boot() == "nixos-generation-2+2-1.conf");
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(s.rig.boot() == "nixos-generation-2+1-2.conf");
    CHECK(s.rig.boot() == "nixos-generation-2+0-3.conf");
    v = s.backend.read();
    CHECK(v.persistent_default == std::optional<std::string>("nixos-generation-3"));
    CHECK(v.next_boot == std::optional<std::string>("nixos-generation-3"));
    CHECK(s.rig.boot() == "nixos-generation-3.conf");  // spent: preferred skips it, the default boots
    s.machine.mark_bad("nixos-generation-2", "trial boot of generation 2 did not reach a verdict");
    CHECK_FALSE(s.rig.var(efivar_name::loader_entry_preferred));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
}

TEST_CASE("systemd-boot 260+: a trial armed as the preferred entry and passing is promoted, and preferred is gone") {
    Setup s(3, "systemd-boot 262.1-1", 2);
    s.rig.set_features(Rig::features_262);
    s.machine.install();
    CHECK(s.machine.try_generation(3, TryOptions{2, Reboot::no, false}).mode == ArmMode::preferred);
    CHECK(s.rig.boot() == "nixos-generation-3+1-1.conf");
    s.machine.mark_good("nixos-generation-3", "checks passed");
    CHECK_FALSE(s.rig.var(efivar_name::loader_entry_preferred));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
    CHECK(s.rig.boot() == "nixos-generation-3.conf");
}

// A LoaderEntryPreferred nixboot did not write (`bootctl set-preferred`, or a
// `preferred` line in loader.conf) outranks the default and skips only bad
// entries: it could pick a trial. status shows what the loader will do, and
// the next change of the default removes it.
TEST_CASE("a foreign preferred entry is modelled where the loader has it, and removed when the default is set") {
    Setup s(3, "systemd-boot 262.1-1", 2);
    s.machine.install();
    EfiVars(s.rig.efivars).set_string(efivar_name::loader_entry_preferred, "nixos-generation-*");
    // Without `preferred` in LoaderFeatures the loader ignores it: a warning only.
    auto v = s.backend.read();
    CHECK(v.persistent_default == std::optional<std::string>("nixos-generation-2"));
    CHECK(std::count(v.warnings.begin(), v.warnings.end(),
                     "EFI variable LoaderEntryPreferred 'nixos-generation-*' is ignored by this loader (no "
                     "'preferred' in LoaderFeatures: systemd-boot before 260) but a newer one would honour it; "
                     "nixboot removes it when it next sets the default") == 1);
    s.rig.set_features(Rig::features_262);
    v = s.backend.read();
    CHECK(v.persistent_default == std::optional<std::string>("nixos-generation-3"));  // the trial entry: G1 broken
    CHECK(s.rig.boot() == "nixos-generation-3+0-1.conf");
    s.machine.mark_bad("nixos-generation-3", "test");
    CHECK_FALSE(s.rig.var(efivar_name::loader_entry_preferred));
    CHECK(s.backend.read().persistent_default == std::optional<std::string>("nixos-generation-2"));
    // loader.conf's `preferred` goes the same way.
    auto conf = s.rig.conf();
    test::write_file(s.rig.esp / "loader/loader.conf", "preferred nixos-generation-1.conf\n" + conf);
    CHECK(s.backend.read().persistent_default == std::optional<std::string>("nixos-generation-1"));
    s.machine.mark_good("nixos-generation-2", "test");
    CHECK(s.rig.conf().find("preferred") == std::string::npos);
    CHECK(s.backend.read().persistent_default == std::optional<std::string>("nixos-generation-2"));
}

// Debian 13's systemd-boot 257.13 strips the counter from the ID (systemd PR
// #38897 reached the 257 stable series) while its version says 257, and a
// loader updated after the trial was armed boots under the other rule: the
// one-shot must select the trial whichever rule the next boot's loader has.
TEST_CASE("systemd-boot refuses more than one try of a generation that sorts after a good one, before any change") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 3);
    s.machine.install();
    auto before = s.rig.snapshot();
    CHECK_THROWS_WITH(s.machine.try_generation(2, TryOptions{2, Reboot::no, false}),
                      "cannot arm 'nixos-generation-2' with 2 tries (more than one is armed by sort order): good entry "
                      "'nixos-generation-3' sorts before it, so the loader would not boot the trial");
    CHECK(s.rig.snapshot() == before);
}

TEST_CASE("a one-shot armed under one loader's ID rule boots the trial under the other") {
    for (const auto& [armed_under, booted_under] :
         std::vector<std::pair<std::string, std::string>>{{"systemd-boot 252.39-1~deb12u1", "systemd-boot 262.1-1"},
                                                          {"systemd-boot 262.1-1", "systemd-boot 252.39-1~deb12u1"},
                                                          {"systemd-boot 257.13-1~deb13u1", "systemd-boot 258"}}) {
        INFO(armed_under << " -> " << booted_under);
        Setup s(3, armed_under, 2);
        s.machine.install();
        s.machine.try_generation(3, {});
        EfiVars(s.rig.efivars).set_string(efivar_name::loader_info, booted_under);
        CHECK(s.rig.boot() == "nixos-generation-3+0-1.conf");
        CHECK(s.rig.boot() == "nixos-generation-2.conf");  // spent: the good default
    }
}

TEST_CASE("one_shot_pattern selects its entry only, under both ID rules") {
    const std::vector<std::string> ids = {
        "nixos-generation-3+2-0.conf", "nixos-generation-30+1-0.conf", "nixos-generation-3-specialisation-x+1-0.conf",
        "nixos-generation-3.conf.bak", "nixos-generation-30.conf",     "nixos-generation-3-specialisation-x.conf",
        "nixos-generation-3+1-1.conf", "nixos-generation-3.conf"};
    const auto p = one_shot_pattern("nixos-generation-3+2-0.conf");
    CHECK(p == "nixos-generation-3[+.]*conf");
    std::vector<std::string> hits;
    for (const auto& id : ids)
        if (efi_fnmatch(p, id)) hits.push_back(id);
    CHECK(hits == std::vector<std::string>{"nixos-generation-3+2-0.conf", "nixos-generation-3+1-1.conf",
                                           "nixos-generation-3.conf"});
    CHECK(one_shot_pattern("NixOS-Generation-3-specialisation-Big+1-0.conf") ==
          "nixos-generation-3-specialisation-big[+.]*conf");
    CHECK(one_shot_pattern("odd[1]*?+1-0.conf") == "odd\\[1\\]\\*\\?[+.]*conf");
    CHECK(efi_fnmatch(one_shot_pattern("odd[1]*?+1-0.conf"), "odd[1]*?+1-0.conf"));
    CHECK_FALSE(efi_fnmatch(one_shot_pattern("odd[1]*?+1-0.conf"), "odd1xx+1-0.conf"));
}

TEST_CASE("a one-shot of generation 5 never matches generation 50") {
    Setup s(0);
    for (unsigned n : {5u, 50u}) test::make_generation(s.rig.store, s.rig.profile, n);
    s.rig.point_profile(50);
    s.machine.install();
    s.machine.try_generation(5, {});
    auto v = s.backend.read();
    CHECK(v.next_boot == std::optional<std::string>("nixos-generation-5"));
    CHECK(s.rig.boot() == "nixos-generation-5+0-1.conf");
}

TEST_CASE("a failed one-shot trial falls back to the good default and is marked bad (G2)") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    s.machine.try_generation(3, {});
    CHECK(s.rig.boot() == "nixos-generation-3+0-1.conf");  // panics...
    CHECK(s.rig.boot() == "nixos-generation-2.conf");      // ...the firmware falls back
    s.machine.mark_bad("nixos-generation-3", "trial boot of generation 3 did not reach a verdict");
    CHECK(s.rig.entries() ==
          Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf", "nixos-generation-3+0-1.conf"});
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    // bad entries can be retried
    s.machine.try_generation(3, {});
    CHECK(s.rig.entries()[2] == "nixos-generation-3+1-0.conf");
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
}

TEST_CASE("try refuses an unknown generation, the default, and a try without a good fallback") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    auto before = s.rig.snapshot();
    CHECK_THROWS_WITH(s.machine.try_generation(9, {}),
                      "unknown generation 9 (no " + (s.rig.tmp / "profiles/system-9-link").string() + ")");
    CHECK_THROWS_WITH(s.machine.try_generation(2, {}),
                      "generation 2 is already the default (loader/entries/nixos-generation-2.conf); nothing to try");
    CHECK(s.rig.snapshot() == before);
    CHECK_THROWS_WITH(s.machine.mark_bad("nixos-generation-2", "x"),
                      "refusing to mark 'nixos-generation-2' bad: it is the only good entry");
    CHECK(s.rig.snapshot() == before);
}

TEST_CASE("mark-bad of the default moves the default to another good entry first") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    s.machine.mark_good("nixos-generation-3", "by hand");
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
    s.machine.mark_bad("nixos-generation-3", "by hand");
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(s.rig.entries()[2] == "nixos-generation-3+0-0.conf");
}

TEST_CASE("rollback makes the previous good generation the default and points the profile at it") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    s.machine.mark_good("nixos-generation-3", "by hand");
    CHECK(s.machine.rollback("") == "nixos-generation-2");
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(current_generation(s.rig.profile) == std::optional<unsigned>(2));
    // install keeps a good default that was chosen by rollback
    s.machine.install();
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    CHECK_THROWS_WITH(s.machine.rollback(""), "no good generation older than 2 to roll back to");
}

TEST_CASE("retention keeps the newest N, the newest good and the booted entry") {
    Setup s(6, "systemd-boot 252.39-1~deb12u1", 1, 1, 2);
    s.machine.install();  // adopts 1, keeps 5 and 6 as the newest two
    CHECK(s.rig.entries() ==
          Files{"nixos-generation-1.conf", "nixos-generation-5+1-0.conf", "nixos-generation-6+1-0.conf"});
    s.machine.try_generation(6, {});
    CHECK(s.rig.boot() == "nixos-generation-6+0-1.conf");  // booted, not yet decided
    for (unsigned n = 7; n <= 9; ++n) test::make_generation(s.rig.store, s.rig.profile, n);
    s.machine.install();
    // 8, 9 newest; 1 newest good + profile; 6 booted (LoaderBootCountPath)
    CHECK(s.rig.entries() == Files{"nixos-generation-1.conf", "nixos-generation-6+0-1.conf",
                                   "nixos-generation-8+1-0.conf", "nixos-generation-9+1-0.conf"});
    // kernels of removed generations are collected, the kept ones stay
    CHECK(std::distance(std::filesystem::directory_iterator(s.rig.esp / "EFI/nixos"), {}) == 8);
}

TEST_CASE("without writable EFI variables the trial works by sort order, other trials are parked, then re-pinned") {
    Setup s(4, "", 2);
    std::filesystem::remove_all(s.rig.efivars);  // no efivarfs at all
    s.machine.install();
    CHECK(s.rig.entries() == Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf",
                                   "nixos-generation-3+1-0.conf", "nixos-generation-4+1-0.conf"});
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    CHECK_THROWS_WITH(s.machine.try_generation(1, {}),
                      "cannot arm 'nixos-generation-1' without writable EFI variables: good entry 'nixos-generation-2' "
                      "sorts before it, so the loader would not boot the trial");
    auto r = s.machine.try_generation(3, {});
    CHECK(r.mode == ArmMode::sort_order);
    // 4 would sort before the good fallback: parked as bad; default unpinned
    CHECK(s.rig.entries() == Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf",
                                   "nixos-generation-3+1-0.conf", "nixos-generation-4+0-0.conf"});
    CHECK(s.rig.pinned_good_default() == "<no default>");
    auto v = s.backend.read();
    CHECK(v.armed == std::optional<std::string>("nixos-generation-3"));
    CHECK(v.armed_mode == std::optional<ArmMode>(ArmMode::sort_order));
    // install while the trial is pending neither re-pins nor adds a counted
    // entry that would sort before the trial
    test::make_generation(s.rig.store, s.rig.profile, 5);
    auto held = s.machine.install();
    CHECK(s.rig.pinned_good_default() == "<no default>");
    CHECK(held.sync.added.empty());
    REQUIRE_FALSE(held.sync.warnings.empty());
    CHECK(
        held.sync.warnings.front() ==
        "generation 5 is not added while the trial of nixos-generation-3 is armed by sort order; it will be after the verdict");
    // the firmware: the trial once, then the good one
    std::filesystem::create_directories(s.rig.efivars);
    CHECK(s.rig.boot() == "nixos-generation-3+0-1.conf");
    CHECK(s.rig.boot() == "nixos-generation-2.conf");
    std::filesystem::remove_all(s.rig.efivars);
    s.machine.mark_bad("nixos-generation-3", "did not reach a verdict");
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    // decided: the held generation comes in as a trial behind the pinned default
    CHECK(s.machine.install().sync.added == Files{"nixos-generation-5"});
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
}

TEST_CASE("a generation without kernel or with a malformed boot.json is skipped, the others install") {
    Setup s(4, "systemd-boot 252.39-1~deb12u1", 4);
    std::filesystem::remove(s.rig.store / "system-2/kernel-file");
    test::write_file(s.rig.store / "system-3/boot.json", "{not json");
    auto r = s.machine.install();
    REQUIRE(r.skipped.size() == 2);
    CHECK(r.skipped[0].rfind("generation 2: ", 0) == 0);
    CHECK(r.skipped[1].rfind("generation 3: ", 0) == 0);
    CHECK(s.rig.entries() == Files{"nixos-generation-1+1-0.conf", "nixos-generation-4.conf"});
}

namespace {

// The warning about an entry with two names (a torn rename), as status and install print it.
std::string torn_warning(const std::filesystem::path& dir, const std::string& id, const std::string& entry,
                         const std::string& stale) {
    return "entry '" + id + "' has 2 file names in " + dir.string() + ", as a rename cut short leaves them: " + entry +
           " (read as the entry), " + stale +
           " (stale); on FAT they can share one cluster chain, so nixboot removes and rewrites neither: unmount the "
           "ESP, run 'fsck.fat -a' on its device (it empties one of the names, which splits them), mount it, remove " +
           stale + " and run 'nixboot install'";
}

std::size_t count(const std::vector<std::string>& lines, const std::string& line) {
    return static_cast<std::size_t>(std::count(lines.begin(), lines.end(), line));
}

std::uintmax_t links(const std::filesystem::path& p) { return std::filesystem::hard_link_count(p); }

}  // namespace

TEST_CASE("two names for one entry are read as one entry, reported once, and neither is removed") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    auto dir = s.rig.esp / "loader/entries";
    std::filesystem::copy_file(dir / "nixos-generation-3+1-0.conf", dir / "nixos-generation-3.conf");
    test::write_file(dir / "other+x.conf", "title Other\nlinux /x\n");
    auto v = s.backend.read();
    CHECK(count(v.warnings, torn_warning(dir, "nixos-generation-3", "nixos-generation-3.conf",
                                         "nixos-generation-3+1-0.conf")) == 1);
    bool garbage = false;
    for (const auto& w : v.warnings) garbage |= w.find("other+x.conf") != std::string::npos;
    CHECK(garbage);
    CHECK(std::count_if(v.entries.begin(), v.entries.end(), [](const Entry& e) { return e.generation == 3; }) == 1);
    CHECK(v.find("nixos-generation-3")->file == "loader/entries/nixos-generation-3.conf");
    CHECK(v.find("nixos-generation-3")->state == EntryState::good);
    auto r = s.machine.install();
    CHECK(count(r.sync.warnings, torn_warning(dir, "nixos-generation-3", "nixos-generation-3.conf",
                                              "nixos-generation-3+1-0.conf")) == 1);
    CHECK(std::filesystem::exists(dir / "nixos-generation-3+1-0.conf"));
    CHECK(std::filesystem::exists(dir / "nixos-generation-3.conf"));
    CHECK(std::filesystem::exists(dir / "other+x.conf"));
}

TEST_CASE("a torn counter rename: the loader's new name decides, mark-bad and mark-good rename only it, try refuses") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    s.machine.try_generation(3, {});
    CHECK(s.rig.boot(Rig::Torn::yes) == "nixos-generation-3+0-1.conf");
    auto dir = s.rig.esp / "loader/entries";
    CHECK(s.rig.entries() == Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf",
                                   "nixos-generation-3+0-1.conf", "nixos-generation-3+1-0.conf"});
    const auto torn =
        torn_warning(dir, "nixos-generation-3", "nixos-generation-3+0-1.conf", "nixos-generation-3+1-0.conf");
    auto v = s.backend.read();
    CHECK(count(v.warnings, torn) == 1);
    REQUIRE(v.find("nixos-generation-3"));
    CHECK(v.find("nixos-generation-3")->file == "loader/entries/nixos-generation-3+0-1.conf");
    CHECK(v.find("nixos-generation-3")->tries_done == 1);
    CHECK(v.booted == "nixos-generation-3");
    CHECK(v.persistent_default == "nixos-generation-2");

    CHECK_THROWS_WITH(s.machine.try_generation(3, {}), "cannot arm 'nixos-generation-3': " + torn);
    s.machine.mark_bad("nixos-generation-3", "checks failed");
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    CHECK(links(dir / "nixos-generation-3+0-1.conf") == 2);
    CHECK(links(dir / "nixos-generation-3+1-0.conf") == 2);

    s.machine.mark_good("nixos-generation-3", "by hand");
    CHECK(s.rig.entries() == Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf",
                                   "nixos-generation-3+1-0.conf", "nixos-generation-3.conf"});
    CHECK(links(dir / "nixos-generation-3.conf") == 2);  // renamed, never unlinked or rewritten
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
    // never the stale name, whatever boots next
    CHECK(s.rig.boot() == "nixos-generation-3.conf");
    CHECK(s.rig.unparsable().empty());
}

TEST_CASE("a generation whose entry has two names is kept with its kernel when retention drops it") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 3);
    s.machine.install();
    auto dir = s.rig.esp / "loader/entries";
    std::filesystem::create_hard_link(dir / "nixos-generation-1+1-0.conf", dir / "nixos-generation-1+0-1.conf");
    auto kernel = parse_bls_entry(test::read_file(dir / "nixos-generation-1+1-0.conf"), "e").kernel.value();
    Machine keep1(s.backend, s.rig.machine_options(1, 1));
    auto r = keep1.install();
    CHECK(r.sync.removed == Files{"nixos-generation-2"});
    CHECK(count(r.sync.warnings, "entry 'nixos-generation-1' is not removed while it has more than one file name") ==
          1);
    CHECK(count(r.sync.warnings, torn_warning(dir, "nixos-generation-1", "nixos-generation-1+0-1.conf",
                                              "nixos-generation-1+1-0.conf")) == 1);
    CHECK(links(dir / "nixos-generation-1+1-0.conf") == 2);
    CHECK(std::filesystem::exists(s.rig.esp / std::filesystem::path(kernel).relative_path()));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
}

TEST_CASE("loader.conf keeps the lines nixboot does not manage") {
    Setup s(2, "systemd-boot 252.39-1~deb12u1", 1);
    test::write_file(s.rig.esp / "loader/loader.conf",
                     "# mine\ntimeout 5\nconsole-mode max\nfrobnicate yes\ndefault nixos-*\n");
    s.machine.install();
    const std::string conf = s.rig.conf();
    CHECK(
        conf.starts_with("# mine\ntimeout 5\nconsole-mode max\nfrobnicate yes\ndefault nixos-generation-1.conf\n"
                         "#nixboot-padding: loader.conf is rewritten in place "));
    CHECK(conf.size() == 512);
    CHECK(conf.ends_with(" \n"));
}

TEST_CASE("loader.conf is padded at install and rewritten in place when the default moves") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    test::write_file(s.rig.esp / "loader/loader.conf", "timeout 5\ndefault nixos-generation-2.conf\n");
    s.machine.install();
    CHECK(s.rig.conf().size() == 512);
    s.machine.backend().set_state("nixos-generation-1", EntryState::good);
    reset_io_stats();
    s.machine.backend().set_default("nixos-generation-1");
    CHECK(io_stats().renames == 0);
    CHECK(io_stats().writes == 1);
    const std::string conf = s.rig.conf();
    CHECK(conf.size() == 512);
    CHECK(conf.starts_with("timeout 5\ndefault nixos-generation-1.conf\n#nixboot-padding"));
    CHECK(conf.find("#nixboot-padding") == conf.rfind("#nixboot-padding"));  // one padding line, not two
    // A no-op install leaves it alone.
    reset_io_stats();
    s.machine.install();
    CHECK(s.rig.conf() == conf);
}

TEST_CASE("a stale LoaderEntryDefault is removed, an unreadable one-shot is refused with its name") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    EfiVars(s.rig.efivars).set_string(efivar_name::loader_entry_default, "nixos-generation-3+1-0.conf");
    s.machine.install();
    CHECK_FALSE(s.rig.var(efivar_name::loader_entry_default));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");

    // An odd-length one-shot variable (5 bytes of data after the attributes).
    auto file = s.rig.efivars / (std::string("LoaderEntryOneShot-") + loader_vendor_guid);
    test::write_file(file, std::string("\x07\0\0\0"
                                       "abcde",
                                       9));
    auto before = s.rig.snapshot();
    CHECK_THROWS_WITH(s.machine.try_generation(3, {}), nixboot::test::starts_with("EFI variable LoaderEntryOneShot (" +
                                                                                  file.string() + "): invalid UTF-16"));
    CHECK(s.rig.snapshot() == before);
}

TEST_CASE("two nixboot commands at once: the second is refused and changes nothing") {
    Setup s(3);
    s.machine.install();
    auto before = s.rig.snapshot();
    auto held = Lock::acquire(s.rig.state);
    CHECK_THROWS_WITH(s.machine.try_generation(2, {}),
                      "another nixboot command is running (lock '" + (s.rig.state / "lock").string() + "' is held)");
    CHECK(s.rig.snapshot() == before);
}

TEST_CASE("a symlink in the ESP pointing outside it is refused") {
    Setup s(2);
    test::TempDir outside;
    std::filesystem::create_directories(s.rig.esp / "loader");
    std::filesystem::create_directory_symlink(outside.path(), s.rig.esp / "loader/entries");
    CHECK_THROWS(s.machine.install());
    CHECK(std::filesystem::is_empty(outside.path()));
}

TEST_CASE("a read-only or full ESP fails with the file and the cause, and loses nothing", "[root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("mounting a small tmpfs as the ESP");
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    test::TmpfsMount mnt(s.rig.esp, "256k");
    s.machine.install();
    auto before = s.rig.entries();
    SECTION("read-only") {
        test::make_generation(s.rig.store, s.rig.profile, 4);
        mnt.remount_read_only();
        CHECK_THROWS_WITH(s.machine.install(), nixboot::test::contains("Read-only file system"));
        CHECK(s.rig.entries() == before);
        CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    }
    SECTION("full") {
        auto top = test::make_generation(s.rig.store, s.rig.profile, 4);
        test::write_file(top / "kernel-file", std::string(400 * 1024, 'k'));
        CHECK_THROWS_WITH(s.machine.install(), nixboot::test::contains("No space left on device"));
        CHECK(s.rig.entries() == before);
        CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
        for (const auto& e : std::filesystem::directory_iterator(s.rig.esp / "EFI/nixos"))
            CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
    }
}

TEST_CASE("the no-op fast path notices what the loader and the user change") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    s.machine.try_generation(3, {});
    s.machine.install();  // settles the stamp
    reset_io_stats();
    s.machine.install();
    CHECK(io_stats().writes == 0);
    // the firmware consumes the try: the next install sees the rename and protects the booted entry
    s.rig.boot();
    s.rig.point_profile(1);  // and someone points the profile elsewhere
    test::make_generation(s.rig.store, s.rig.profile, 4);
    auto r = s.machine.install();
    CHECK(r.sync.added == Files{"nixos-generation-4"});
    // an entry edited in place is rewritten
    auto e2 = s.rig.esp / "loader/entries/nixos-generation-2.conf";
    test::write_file(e2, "title broken\n");
    r = s.machine.install();
    CHECK(r.sync.updated == Files{"nixos-generation-2"});
    CHECK(test::read_file(e2).find("title NixOS\n") == 0);
    // a hand-edited loader.conf default is put back
    test::write_file(s.rig.esp / "loader/loader.conf", "default nixos-generation-3*\n");
    s.machine.install();
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    // a stale EFI default is removed
    EfiVars(s.rig.efivars).set_string(efivar_name::loader_entry_default, "nixos-generation-4+1-0.conf");
    s.machine.install();
    CHECK_FALSE(s.rig.var(efivar_name::loader_entry_default));
}

// ---- a command that fails after its change says what took effect ---------------

namespace {

// Runs `fn` with the journal unable to grow (RLIMIT_FSIZE at its size, as a
// full state directory would fail it, but deterministic and unprivileged):
// every ESP file a verdict writes is smaller than the padded journal.
template <class F>
void with_journal_full(const Rig& rig, F fn) {
    auto journal = rig.state / "journal";
    while (!std::filesystem::exists(journal) || std::filesystem::file_size(journal) < 16384) {
        JournalRecord r;
        r.time = journal_now();
        r.event = JournalEvent::install;
        r.reason = std::string(1000, 'p');
        append_journal(rig.state, r);
    }
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = std::filesystem::file_size(journal);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    struct Restore {
        struct rlimit old;
        void (*handler)(int);
        ~Restore() {
            ::setrlimit(RLIMIT_FSIZE, &old);
            std::signal(SIGXFSZ, handler);
        }
    } restore{old, old_handler};
    fn();
}

std::string journal_full_error(const Rig& rig) {
    return "writing '" + (rig.state / "journal").string() + "': File too large";
}

}  // namespace

TEST_CASE("a journal that cannot be written stops a verdict before anything changes") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    std::filesystem::remove(s.rig.state / "journal");
    std::filesystem::create_directory(s.rig.state / "journal");  // a directory where the journal file belongs
    auto before = s.rig.snapshot();
    std::string cause = "opening '" + (s.rig.state / "journal").string() + "': Is a directory";
    CHECK_THROWS_WITH(s.machine.try_generation(3, {}), cause);
    CHECK_THROWS_WITH(s.machine.mark_bad("nixos-generation-3", "x"), cause);
    CHECK_THROWS_WITH(s.machine.mark_good("nixos-generation-3", "x"), cause);
    test::make_generation(s.rig.store, s.rig.profile, 4);
    CHECK_THROWS_WITH(s.machine.install(), cause);
    std::filesystem::remove(s.rig.profile.parent_path() / "system-4-link");
    CHECK(s.rig.snapshot() == before);
}

TEST_CASE("try on a full state directory: the trial is armed and the error says so and what to run") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    with_journal_full(s.rig, [&] {
        CHECK_THROWS_WITH(
            s.machine.try_generation(3, {}),
            "nixos-generation-3 is armed (one-shot trial with 1 try; fallback nixos-generation-2) and boots at "
            "the next reboot, but journaling it failed: " +
                journal_full_error(s.rig) +
                "; to cancel it run 'nixboot mark-bad 3' (it can be tried again later); no reboot was started");
    });
    CHECK(s.rig.var(efivar_name::loader_entry_oneshot) == std::optional<std::string>("nixos-generation-3[+.]*conf"));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    // What the error told the user to run works once the journal has room.
    s.machine.mark_bad("nixos-generation-3", "cancelled");
    CHECK_FALSE(s.rig.var(efivar_name::loader_entry_oneshot));
}

TEST_CASE("mark-good, mark-bad, rollback and install on a full state directory say what took effect") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    s.machine.try_generation(3, {});
    with_journal_full(s.rig, [&] {
        CHECK_THROWS_WITH(
            s.machine.mark_bad("nixos-generation-3", "x"),
            "nixos-generation-3 is marked bad and the default is nixos-generation-2, but journaling it failed: " +
                journal_full_error(s.rig) + "; nothing more to run; the journal lacks its 'bad' record");
    });
    CHECK(s.rig.entries() ==
          Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf", "nixos-generation-3+0-0.conf"});
    with_journal_full(s.rig, [&] {
        // The verdict is journaled before the loader changes: here it is the
        // record that fails, and nothing changed.
        CHECK_THROWS_WITH(s.machine.mark_good("nixos-generation-3", "x"), journal_full_error(s.rig));
    });
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    s.machine.mark_good("nixos-generation-1", "by hand");
    s.machine.mark_good("nixos-generation-2", "by hand");
    with_journal_full(s.rig, [&] {
        // The rollback is journaled before the loader changes (its intent):
        // the record fails, and nothing changed.
        CHECK_THROWS_WITH(s.machine.rollback(""), journal_full_error(s.rig));
    });
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    test::make_generation(s.rig.store, s.rig.profile, 4);
    with_journal_full(s.rig, [&] {
        CHECK_THROWS_WITH(
            s.machine.install(),
            "the entries are synced (1 added, 0 removed; default nixos-generation-2), but journaling it failed: " +
                journal_full_error(s.rig) + "; nothing more to run; the journal lacks its 'install' record");
    });
    CHECK(std::filesystem::exists(s.rig.esp / "loader/entries/nixos-generation-4+1-0.conf"));
}

// ---- retention against G4 --------------------------------------------------------

TEST_CASE(
    "keep 1 keeps the newest, the newest good, the default and the booted generation, and removes older good ones") {
    Setup s(4, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();  // adopts 2; 1, 3 and 4 enter as trials
    s.machine.mark_good("nixos-generation-1", "by hand");
    s.machine.mark_good("nixos-generation-3", "by hand");  // default and profile: 3
    s.machine.rollback("");                                // default and profile: 2
    // The firmware booted 1 (it is running); 2 is the default, 3 the newest good.
    EfiVars(s.rig.efivars).set_string(efivar_name::loader_entry_selected, "nixos-generation-1.conf");
    test::make_generation(s.rig.store, s.rig.profile, 5);
    test::make_generation(s.rig.store, s.rig.profile, 6);
    Machine keep1(s.backend, s.rig.machine_options(1, 1));
    auto r = keep1.install();
    CHECK(r.sync.removed == std::vector<std::string>{"nixos-generation-4"});
    CHECK(s.rig.entries() == Files{"nixos-generation-1.conf", "nixos-generation-2.conf", "nixos-generation-3.conf",
                                   "nixos-generation-6+1-0.conf"});
    // Once nothing but retention holds 1 and 2, they go: good ones included.
    EfiVars(s.rig.efivars).remove(efivar_name::loader_entry_selected);
    s.machine.mark_good("nixos-generation-3", "by hand");  // default and profile: 3
    keep1.install();
    CHECK(s.rig.entries() == Files{"nixos-generation-3.conf", "nixos-generation-6+1-0.conf"});
    CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
}

// ---- recoverable states have a way out -------------------------------------------

TEST_CASE(
    "a malformed LoaderEntryDefault or LoaderEntryOneShot: status works and names the fix, changes refuse with it") {
    for (const char* name : {efivar_name::loader_entry_default, efivar_name::loader_entry_oneshot}) {
        Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
        s.machine.install();
        auto file = s.rig.efivars / (std::string(name) + "-" + loader_vendor_guid);
        test::write_file(file, std::string("\x07\0\0\0"
                                           "abcdefg",
                                           11));  // 7 bytes: odd length
        std::string problem = "EFI variable " + std::string(name) + " (" + file.string() +
                              "): invalid UTF-16: odd length (7 bytes); nixboot changes nothing while it is there: "
                              "remove it with 'chattr -i " +
                              file.string() + " && rm " + file.string() + "'";
        auto st = s.machine.status();
        CHECK(st.view.persistent_default == std::optional<std::string>("nixos-generation-2"));
        CHECK(std::count(st.view.warnings.begin(), st.view.warnings.end(), problem) == 1);
        auto before = s.rig.snapshot();
        CHECK_THROWS_WITH(s.machine.try_generation(3, {}), problem);
        CHECK_THROWS_WITH(s.machine.mark_good("nixos-generation-3", "x"), problem);
        CHECK_THROWS_WITH(s.machine.mark_bad("nixos-generation-3", "x"), problem);
        CHECK_THROWS_WITH(s.machine.rollback(""), problem);
        test::make_generation(s.rig.store, s.rig.profile, 4);
        CHECK_THROWS_WITH(s.machine.install(), problem);
        std::filesystem::remove(s.rig.profile.parent_path() / "system-4-link");
        CHECK(s.rig.snapshot() == before);
        std::filesystem::remove(file);  // what the line says to run (chattr: efivarfs only)
        s.machine.try_generation(3, {});
        CHECK(s.rig.var(efivar_name::loader_entry_oneshot) ==
              std::optional<std::string>("nixos-generation-3[+.]*conf"));
    }
}

TEST_CASE("a generation numbered above 999999999 is refused at install naming its link, the others install") {
    Setup s(2, "systemd-boot 252.39-1~deb12u1", 2);
    auto top = s.rig.store / "system-2";
    for (const char* n : {"1000000000", "4294967296", "99999999999999999999999"})
        std::filesystem::create_symlink(top, s.rig.profile.parent_path() / ("system-" + std::string(n) + "-link"));
    auto r = s.machine.install();
    auto dir = s.rig.profile.parent_path().string();
    std::vector<std::string> expected;
    for (const char* n : {"1000000000", "4294967296", "99999999999999999999999"})
        expected.push_back("'" + dir + "/system-" + n +
                           "-link': generation number above 999999999, the largest an entry ID "
                           "carries; not installed");
    std::sort(expected.begin(), expected.end());
    auto skipped = r.skipped;
    std::sort(skipped.begin(), skipped.end());
    CHECK(skipped == expected);
    CHECK(s.rig.entries() == Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf"});
    // What install writes, list reads back: every entry is a generation.
    CHECK(s.machine.status().view.entries.size() == s.rig.entries().size());
}

TEST_CASE("a FIFO or symlink loop in an older generation: install finishes at once and releases the lock") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 3);
    std::filesystem::remove(s.rig.store / "system-1/boot.json");
    REQUIRE(::mkfifo((s.rig.store / "system-1/boot.json").c_str(), 0644) == 0);
    std::filesystem::remove(s.rig.store / "system-2/boot.json");
    std::filesystem::create_symlink("boot.json", s.rig.store / "system-2/boot.json");
    InstallReport r;
    CHECK(test::finishes_within(std::chrono::seconds(10), {s.rig.store / "system-1/boot.json"},
                                [&] { r = s.machine.install(); }));
    REQUIRE(r.skipped.size() == 2);
    CHECK(r.skipped[0] ==
          "generation 1: reading '" + (s.rig.store / "system-1/boot.json").string() + "': not a regular file");
    CHECK(r.skipped[1] ==
          "generation 2: reading '" + (s.rig.store / "system-2/boot.json").string() + "': a symbolic link loop");
    CHECK(s.rig.entries() == Files{"nixos-generation-3.conf"});
    CHECK_NOTHROW(Lock::acquire(s.rig.state));
}

TEST_CASE("an unterminated LoaderEntryDefault is read as the loader reads it, and install replaces it") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    s.machine.mark_good("nixos-generation-1", "by hand");  // loader.conf: generation 1
    // "nixos-generation-2.confX" without its NUL: systemd-boot reads "nixos-generation-2.conf"
    const auto file = s.rig.efivars / (std::string(efivar_name::loader_entry_default) + "-" + loader_vendor_guid);
    const auto wide = utf8_to_utf16le("nixos-generation-2.confX", Terminator::forbidden);
    test::write_file(file, std::string("\x07\0\0\0", 4) + std::string(wide.begin(), wide.end()));
    auto view = s.backend.read();
    CHECK(view.blocking.empty());
    CHECK(view.persistent_default == "nixos-generation-2");
    CHECK(std::any_of(view.warnings.begin(), view.warnings.end(), [](const std::string& w) {
        return w.find(
                   "not NUL-terminated: systemd-boot reads it without its last character, as "
                   "'nixos-generation-2.conf'") != std::string::npos;
    }));
    s.machine.install();
    CHECK_FALSE(std::filesystem::exists(file));
    CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
}

// FAT ignores case: systemd-boot lowercases entry IDs, and two names that
// differ only in case are one file.
TEST_CASE(
    "specialisations that differ only in case: one entry and a warning, and a lowercased LoaderEntrySelected is recognised") {
    Setup s(2, "systemd-boot 252.39-1~deb12u1", 1);
    s.machine.install();
    test::make_generation(s.rig.store, s.rig.profile, 3, {"Foo", "foo", "bar"});
    auto r = s.machine.install();
    CHECK(r.sync.added == Files{"nixos-generation-3", "nixos-generation-3-specialisation-Foo",
                                "nixos-generation-3-specialisation-bar"});
    CHECK(r.sync.warnings ==
          Files{"generation 3: specialisation 'foo' gets no entry: on the ESP's FAT file system, which "
                "ignores case, its file name is the same as 'nixos-generation-3-specialisation-Foo''s"});
    CHECK(s.machine.install().sync.added.empty());
    // the loader reports the ID it made: lowercased, without the counter
    EfiVars(s.rig.efivars).set_string(efivar_name::loader_entry_selected, "nixos-generation-3-specialisation-foo.conf");
    CHECK(s.backend.read().booted == "nixos-generation-3-specialisation-Foo");
}

// G3 after a power cut on FAT: vfat can leave a renamed entry's new name
// empty (VM scenario systemd-boot:7). systemd-boot leaves such an entry out
// of its menu, so it must never be the default until it is rewritten.
TEST_CASE("an entry the loader skips is never the default: install, mark-good and mark-bad rewrite it first") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    const auto entries = s.rig.esp / "loader/entries";
    SECTION("the good default left empty: the view moves off it, install rewrites it and keeps it the default") {
        test::write_file(entries / "nixos-generation-2.conf", "");
        auto view = s.backend.read();
        REQUIRE(view.find("nixos-generation-2") != nullptr);
        CHECK_FALSE(view.find("nixos-generation-2")->bootable);
        CHECK(view.persistent_default != "nixos-generation-2");
        CHECK(std::any_of(view.warnings.begin(), view.warnings.end(), [](const std::string& w) {
            return w.ends_with(
                "nixos-generation-2.conf: it has no 'linux' or 'efi' line, so the loader skips it "
                "(`nixboot install` rewrites nixboot's entries)");
        }));
        CHECK_THROWS_WITH(s.backend.set_default("nixos-generation-2"),
                          nixboot::test::contains("the loader skips it; run `nixboot install` to rewrite it"));
        auto r = s.machine.install();
        CHECK(r.sync.updated == Files{"nixos-generation-2"});
        CHECK(test::read_file(entries / "nixos-generation-2.conf").find("title NixOS\n") == 0);
        CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    }
    SECTION("a kernel the entry names is missing: not bootable, install copies it back") {
        auto view = s.backend.read();
        const auto text = test::read_file(entries / "nixos-generation-2.conf");
        const auto at = text.find("\nlinux ");
        REQUIRE(at != std::string::npos);
        const auto kernel = text.substr(at + 7, text.find('\n', at + 7) - at - 7);
        std::filesystem::remove(s.rig.esp / std::filesystem::path(kernel).relative_path());
        view = s.backend.read();
        CHECK_FALSE(view.find("nixos-generation-2")->bootable);
        s.machine.install();
        CHECK(s.backend.read().find("nixos-generation-2")->bootable);
        CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
    }
    SECTION("a promotion cut after the rename: the blessed name is empty, mark-good again rewrites and pins it") {
        s.machine.try_generation(3, {});
        s.rig.boot();
        s.machine.mark_good("nixos-generation-3", "check");
        test::write_file(entries / "nixos-generation-3.conf", "");
        CHECK(s.backend.read().persistent_default != "nixos-generation-3");
        s.machine.mark_good("nixos-generation-3", "check");
        CHECK(test::read_file(entries / "nixos-generation-3.conf").find("title NixOS\n") == 0);
        CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
    }
    SECTION("mark-bad whose only fallback is empty rewrites it, then falls back to it") {
        s.machine.try_generation(3, {});
        s.rig.boot();
        test::write_file(entries / "nixos-generation-2.conf", "");
        s.machine.mark_bad("nixos-generation-3", "check");
        CHECK(test::read_file(entries / "nixos-generation-2.conf").find("title NixOS\n") == 0);
        CHECK(s.rig.pinned_good_default() == "nixos-generation-2");
        CHECK(s.backend.read().find("nixos-generation-3")->state == EntryState::bad);
    }
}

TEST_CASE("a generation whose entry would exceed the read limit is skipped, an oversized entry on disk stops no verb") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    SECTION("too many kernel parameters: skipped with its size, the others install") {
        const auto top = test::make_generation(s.rig.store, s.rig.profile, 4);
        BootDocument doc = parse_bootspec(test::read_file(top / "boot.json"), "boot.json");
        for (int i = 0; i < 1000; ++i)
            doc.boot.kernel_params.push_back("p" + std::to_string(i) + "=" + std::string(60, 'x'));
        test::write_file(top / "boot.json", format_bootspec(doc));
        test::make_generation(s.rig.store, s.rig.profile, 5);
        auto r = s.machine.install();
        REQUIRE(r.skipped.size() == 1);
        CHECK(r.skipped[0] == "generation 4: " + (top / "boot.json").string() +
                                  ": kernel parameters of 65907 bytes, more than the 16384 a boot entry may hold");
        CHECK(s.rig.entries() == Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf",
                                       "nixos-generation-3+1-0.conf", "nixos-generation-5+1-0.conf"});
    }
    SECTION("an entry on disk larger than 64 KiB: reported, rewritten by install, other verbs work") {
        const auto big = s.rig.esp / "loader/entries/nixos-generation-3+1-0.conf";
        test::write_file(big, "title x\noptions " + std::string(70 * 1024, 'x') + "\n");
        const auto view = s.backend.read();
        CHECK(view.find("nixos-generation-3") != nullptr);
        CHECK(std::any_of(view.warnings.begin(), view.warnings.end(), [&](const std::string& w) {
            return w == "reading '" + big.string() + "': larger than 65536 bytes (entry skipped)";
        }));
        // nixboot cannot see what the loader would make of it, so mark-good
        // rewrites it before it becomes the default
        s.machine.mark_good("nixos-generation-3", "by hand");
        CHECK(s.rig.pinned_good_default() == "nixos-generation-3");
        CHECK(test::read_file(s.rig.esp / "loader/entries/nixos-generation-3.conf").size() < 4096);
        CHECK(s.machine.rollback("") == "nixos-generation-2");
        s.machine.mark_bad("nixos-generation-3", "by hand");
        CHECK(s.rig.entries()[2] == "nixos-generation-3+0-0.conf");
        const auto bad = s.rig.esp / "loader/entries/nixos-generation-3+0-0.conf";
        test::write_file(bad, "title x\noptions " + std::string(70 * 1024, 'x') + "\n");
        auto r = s.machine.install();
        CHECK(r.sync.updated == Files{"nixos-generation-3"});
        CHECK(test::read_file(bad).size() < 4096);
    }
}

TEST_CASE("install removes what an interrupted one left: temp files and unreferenced kernel copies") {
    Setup s(3, "systemd-boot 252.39-1~deb12u1", 2);
    s.machine.install();
    const pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    REQUIRE(::waitpid(dead, nullptr, 0) == dead);
    const std::string tag = ".nixboot-tmp-" + std::to_string(dead) + "-0-abc";
    const Files planted{"esp/EFI/nixos/.0123-linux.efi" + tag, "esp/loader/entries/.nixos-generation-4.conf" + tag,
                        "esp/loader/.loader.conf" + tag, "state/.install-stamp" + tag,
                        "esp/EFI/nixos/00000000000000000000000000000000-linux.efi"};
    for (const auto& p : planted) test::write_file(s.rig.tmp / p, "left over");
    test::write_file(s.rig.esp / "EFI/nixos/.user-file", "not nixboot's");
    test::make_generation(s.rig.store, s.rig.profile, 4);
    s.machine.install();
    for (const auto& p : planted) CHECK_FALSE(std::filesystem::exists(s.rig.tmp / p));
    CHECK(std::filesystem::exists(s.rig.esp / "EFI/nixos/.user-file"));
    CHECK(s.rig.entries().size() == 4);
}

TEST_CASE("after ENOSPC the next install has the space back: orphan copies and temp files go first", "[root]") {
    NIXBOOT_SKIP_UNLESS_ROOT("mounting a small tmpfs as the ESP");
    test::enter_private_mount_namespace();
    Setup s(1, "systemd-boot 252.39-1~deb12u1", 1);
    test::TmpfsMount mnt(s.rig.esp, "512k");
    s.machine.install();
    SECTION("a kernel copied before the initrd hit ENOSPC") {
        auto top = test::make_generation(s.rig.store, s.rig.profile, 2);
        test::write_file(top / "kernel-file", std::string(300 * 1024, 'a'));
        test::write_file(top / "initrd-file", std::string(300 * 1024, 'b'));
        CHECK_THROWS_WITH(s.machine.install(), nixboot::test::contains("No space left on device"));
        // The user drops that generation and builds a smaller one.
        std::filesystem::remove(s.rig.profile.parent_path() / "system-2-link");
        top = test::make_generation(s.rig.store, s.rig.profile, 3);
        test::write_file(top / "kernel-file", std::string(300 * 1024, 'c'));
        auto r = s.machine.install();
        CHECK(r.sync.added == Files{"nixos-generation-3"});
    }
    SECTION("a kernel-sized temp file of a killed install") {
        const pid_t dead = ::fork();
        REQUIRE(dead >= 0);
        if (dead == 0) ::_exit(0);
        REQUIRE(::waitpid(dead, nullptr, 0) == dead);
        test::write_file(s.rig.esp / ("EFI/nixos/.0123-linux.efi.nixboot-tmp-" + std::to_string(dead) + "-0-abc"),
                         std::string(300 * 1024, 't'));
        auto top = test::make_generation(s.rig.store, s.rig.profile, 2);
        test::write_file(top / "kernel-file", std::string(300 * 1024, 'a'));
        auto r = s.machine.install();
        CHECK(r.sync.added == Files{"nixos-generation-2"});
    }
}

TEST_CASE("a specialisation named to escape or inject is refused, no file appears outside the entries") {
    Setup s(2, "systemd-boot 252.39-1~deb12u1", 2);
    const auto top = test::make_generation(s.rig.store, s.rig.profile, 3, {"alt"});
    const std::string json = test::read_file(top / "boot.json");
    for (const std::string name : {"../../../escaped", "x\nlinux /evil", "a'b", "$(reboot)"}) {
        INFO(name);
        std::string hostile = json;
        const std::string quoted_name = json_quote(name);
        hostile.replace(hostile.find("\"alt\""), 5, quoted_name);
        test::write_file(top / "boot.json", hostile);
        auto r = s.machine.install();
        REQUIRE(r.skipped.size() == 1);
        CHECK(r.skipped[0].rfind("generation 3: " + (top / "boot.json").string() + ": specialisation '", 0) == 0);
        CHECK(s.rig.entries() == Files{"nixos-generation-1+1-0.conf", "nixos-generation-2.conf"});
        Files top_level;
        for (const auto& e : std::filesystem::directory_iterator(s.rig.esp))
            top_level.push_back(e.path().filename().string());
        std::sort(top_level.begin(), top_level.end());
        CHECK(top_level == Files{"EFI", "loader"});
        CHECK_FALSE(std::filesystem::exists(s.rig.tmp / "escaped"));
    }
}
