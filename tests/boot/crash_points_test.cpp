// Crash-point enumeration (issue 14), after ALICE and CrashMonkey: each
// command runs once under NIXBOOT_CRASH_LOG to list its K mutating
// operations (boot/util/crash_point.hpp), then once per operation N and mode
// with NIXBOOT_CRASH_AT=N (stopped before it) and N:torn (left half done: a
// write's rename with the temp name still there, a rename with both names,
// an in-place write or append with half its bytes), from the same starting
// state each time. A crash state must keep every file parsing, `status
// --json` working, the loader's persistent default good (G1) and every good
// file (G4); then running the command again (for the check, the next boot
// and its check) must succeed and, unless a torn rename left two names the
// loader may share (kept for fsck.fat by design), end where an uninterrupted
// run ends. It never unlinks one of two names of one file (on FAT that would
// free the other's clusters).
//
// Unsynced renames lost out of order (ALICE's reorderings): a rename made
// without its directory's fsync (Sync::file_only, Sync::no: logged as
// "write-unsynced") may be lost while later operations reached the disk,
// until a barrier ("- sync-dir DIR", its directory's fsync) makes it durable.
// For every cut (and for the end of the command) each such pending rename is
// put back as it was before it, one at a time, and the state judged as
// above. The counts per command are printed.
#include "boot/bls_entry.hpp"
#include "boot/grub/grubenv.hpp"
#include "boot/grub/state.hpp"
#include "boot/loader_conf.hpp"
#include "boot/util/crash_point.hpp"
#include "tests/boot/health/check_rig.hpp"

#include "tests/catch.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <iostream>
#include <map>
#include <set>

using namespace nixboot;
using nixboot::test::CheckRig;
using nixboot::test::read_file;
using nixboot::test::Rig;
using nixboot::test::run_program;
using nixboot::test::RunResult;
using nixboot::test::TempDir;
using nixboot::test::write_file;

namespace {

using Env = std::vector<std::string>;
using Files = std::map<std::string, std::string>;  // absolute path -> content

// One command on one machine, and how to judge it.
struct Subject {
    std::string name;
    std::vector<std::filesystem::path> dirs;           // everything the command may change, restored before each run
    std::vector<std::filesystem::path> volatile_dirs;  // restored too, but a tmpfs a power cut empties (/run)
    std::filesystem::path profile;                     // the system profile link (restored to its target)
    std::function<RunResult(const Env&)> act;
    std::function<RunResult()> finish;       // the command again, or the next boot's check
    std::function<std::string()> problems;   // "" or what is broken: parsing, status, G1
    std::function<Files()> protected_files;  // the files of good generations now (G4)
    std::function<std::string()> digest;     // the end state, for "finished the job"
    // The operation (a line of the log) from which on a crash must end as
    // the uninterrupted run does; before it, finish() alone may also decide
    // (the check's verdict lives in /run until it is journaled). Unset: any.
    std::function<bool(const std::string&)> point_of_no_return;
};

std::string status_problem(const RunResult& r) {
    if (r.status != 0) return "status --json failed: " + r.err;
    try {
        if (!nlohmann::json::parse(r.out).is_object()) return "status --json printed no JSON object";
    } catch (const std::exception& e) {
        return std::string("status --json printed no JSON: ") + e.what();
    }
    return "";
}

// Regular files that have more than one name: what a torn rename leaves.
std::set<std::string> multi_linked(const std::vector<std::filesystem::path>& dirs) {
    std::set<std::string> out;
    for (const auto& dir : dirs) {
        if (!std::filesystem::exists(dir)) continue;
        for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
            if (e.is_regular_file() && !e.is_symlink() && e.hard_link_count() > 1) out.insert(e.path().string());
    }
    return out;
}

struct Tally {
    std::size_t checked = 0, passed = 0, torn_names_kept = 0, temp_twins_kept = 0, lost_renames = 0;
};

std::map<std::string, Tally>& tallies() {
    static std::map<std::string, Tally> t;
    return t;
}

void report(const std::string& name, const Tally& t) {
    std::cout << "crash states: " << name << ": " << t.checked << " checked, " << t.passed << " passed";
    if (t.torn_names_kept) std::cout << " (" << t.torn_names_kept << " with a torn rename's two names kept)";
    if (t.lost_renames) std::cout << " (" << t.lost_renames << " with an unsynced rename lost)";
    if (t.temp_twins_kept)
        std::cout << " (" << t.temp_twins_kept << " with a torn write's temp name kept beside its target)";
    std::cout << std::endl;  // flushed: a fork in run_program would repeat a buffered line
}

// Runs the enumeration for `s`, from the state its directories hold now.
Tally enumerate(const Subject& s) {
    TempDir work;
    std::vector<std::filesystem::path> saved;
    std::vector<std::filesystem::path> all_dirs = s.dirs;
    all_dirs.insert(all_dirs.end(), s.volatile_dirs.begin(), s.volatile_dirs.end());
    for (std::size_t i = 0; i < all_dirs.size(); ++i) {
        saved.push_back(work / ("pristine-" + std::to_string(i)));
        if (std::filesystem::exists(all_dirs[i]))
            std::filesystem::copy(
                all_dirs[i], saved.back(),
                std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
    }
    const auto profile_target = std::filesystem::read_symlink(s.profile);
    auto restore = [&] {
        for (std::size_t i = 0; i < all_dirs.size(); ++i) {
            std::filesystem::remove_all(all_dirs[i]);
            if (std::filesystem::exists(saved[i]))
                std::filesystem::copy(
                    saved[i], all_dirs[i],
                    std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
        }
        std::filesystem::remove(s.profile);
        std::filesystem::create_symlink(profile_target, s.profile);
    };

    // The uninterrupted run: its operations, its end state, the files it keeps.
    const Files good_before = s.protected_files();
    const auto log = work / "operations";
    auto r = s.act({"NIXBOOT_CRASH_LOG=" + log.string()});
    INFO(s.name << ": " << r.out << r.err);
    REQUIRE(r.status == 0);
    // "N KIND PATH" per operation, "- KIND PATH" per barrier, in order.
    std::vector<std::string> events, ops;
    std::vector<std::size_t> event_of;  // ops[i] is events[event_of[i]]
    if (std::filesystem::exists(log)) events = nixboot::test::lines_of(read_file(log));
    for (std::size_t i = 0; i < events.size(); ++i)
        if (!events[i].starts_with("- ")) {
            ops.push_back(events[i]);
            event_of.push_back(i);
        }
    const Files good_after = s.protected_files();
    Files keep;  // good before and after: no crash state may lose these (G4)
    for (const auto& [path, content] : good_before)
        if (auto it = good_after.find(path); it != good_after.end() && it->second == content) keep[path] = content;
    auto f = s.finish();
    INFO(f.out << f.err);
    REQUIRE(f.status == 0);
    const std::string want = s.digest();
    restore();
    f = s.finish();  // a power cut before the command did anything
    REQUIRE(f.status == 0);
    const std::string unstarted = s.digest();
    std::size_t no_return = 0;
    if (s.point_of_no_return)
        while (no_return < ops.size() && !s.point_of_no_return(ops[no_return])) ++no_return;

    auto lost = [&] {
        std::string out;
        for (const auto& [path, content] : keep)
            if (!std::filesystem::is_regular_file(path) || read_file(path) != content) out += " " + path;
        return out.empty() ? "" : "lost good files:" + out;
    };

    auto kind_of = [&](std::size_t n) {
        const auto from = ops[n - 1].find(' ') + 1;
        return ops[n - 1].substr(from, ops[n - 1].find(' ', from) - from);
    };
    auto path_of = [&](std::size_t n) {
        const auto from = ops[n - 1].find(' ') + 1;
        return ops[n - 1].substr(ops[n - 1].find(' ', from) + 1);
    };
    // The unsynced renames (write-unsynced) a cut before operation n (or,
    // for n = ops.size() + 1, after the command ended) may lose: no fsync of
    // their directory since, and their file not written again since.
    auto losable = [&](std::size_t n) {
        std::vector<std::size_t> out;
        const std::size_t end = n <= ops.size() ? event_of[n - 1] : events.size();
        for (std::size_t m = 1; m < n && m <= ops.size(); ++m) {
            if (kind_of(m) != "write-unsynced") continue;
            const auto path = path_of(m);
            const auto dir = std::filesystem::path(path).parent_path().string();
            bool settled = false;
            for (std::size_t e = event_of[m - 1] + 1; e < end && !settled; ++e)
                settled = events[e] == "- sync-dir " + dir || events[e].ends_with(" " + path);
            if (!settled) out.push_back(m);
        }
        return out;
    };

    Tally t;
    // One crash state: the command cut before operation n (n = ops.size() + 1:
    // not cut), `crash_env` saying how; `lose`: put back an unsynced rename.
    auto judge = [&](std::size_t n, const Env& crash_env, const std::function<void()>& lose, const std::string& how) {
        restore();
        ++t.checked;
        std::vector<std::string> why;
        const auto crashed = s.act(crash_env);
        const int expected = n <= ops.size() ? crash_exit_status : 0;
        if (crashed.status != expected)
            why.push_back("did not stop at the crash point (status " + std::to_string(crashed.status) +
                          "): " + crashed.err);
        if (lose) lose();
        if (auto p = s.problems(); !p.empty()) why.push_back("crash state: " + p);
        if (auto p = lost(); !p.empty()) why.push_back("crash state: " + p);
        const auto names = multi_linked(s.dirs);
        // Two names the design keeps for fsck.fat (a torn rename of an
        // entry, which nixboot neither removes nor renames again).
        std::size_t durable_names = 0;
        for (const auto& name : names)
            if (name.find(".nixboot-tmp-") == std::string::npos) ++durable_names;
        const bool kept_twins = durable_names >= 2;
        const auto again = s.finish();
        if (again.status != 0 && !kept_twins) why.push_back("finishing failed: " + again.out + again.err);
        if (auto p = s.problems(); !p.empty()) why.push_back("after finishing: " + p);
        if (auto p = lost(); !p.empty()) why.push_back("after finishing: " + p);
        for (const auto& name : names) {
            if (std::filesystem::exists(name)) continue;
            // On FAT the two names share clusters: unlinking either frees
            // the other's (a write's temp name too, RootDir::remove_stale_temp_files).
            why.push_back("removed " + name + ", one name of a torn rename");
        }
        // A torn write's temp name is kept beside its target for fsck.fat
        // too; once fsck has split them (here: a hard link unlinked,
        // harmless) the rest must end as an uninterrupted run does.
        bool temp_twin_kept = false;
        for (const auto& name : names)
            if (name.find(".nixboot-tmp-") != std::string::npos && std::filesystem::exists(name)) {
                temp_twin_kept = true;
                std::filesystem::remove(name);
            }
        if (temp_twin_kept) ++t.temp_twins_kept;
        if (kept_twins) {
            ++t.torn_names_kept;
        } else if (auto got = s.digest(); got != want && (got != unstarted || n > no_return + 1)) {
            why.push_back("ends elsewhere than an uninterrupted run:\n" + got + "instead of\n" + want);
        }
        INFO(s.name << ": crash " << how);
        INFO("the crashed run said: " << crashed.out << crashed.err << "; finishing said: " << again.out << again.err);
        std::string all;
        for (const auto& w : why) all += w + "\n";
        CHECK(all == "");
        if (why.empty()) ++t.passed;
    };
    for (std::size_t n = 1; n <= ops.size() + 1; ++n) {
        const std::string at = "NIXBOOT_CRASH_AT=" + std::to_string(n);
        if (n <= ops.size()) {
            const auto kind = kind_of(n);
            const bool tearable = kind == "write" || kind == "write-unsynced" || kind == "rename" ||
                                  kind == "overwrite" || kind == "append" || kind == "profile";
            judge(n, {at}, {}, "at operation " + ops[n - 1]);
            if (tearable) judge(n, {at + ":torn"}, {}, "at operation " + ops[n - 1] + " (torn)");
        }
        // ALICE's reordering: a later operation reached the disk, an earlier
        // unsynced rename did not (its target as it was before it).
        for (const std::size_t m : losable(n)) {
            const std::filesystem::path target = path_of(m);
            restore();
            s.act({"NIXBOOT_CRASH_AT=" + std::to_string(m)});
            const bool existed = std::filesystem::is_regular_file(target);
            const std::string before = existed ? read_file(target) : "";
            auto lose = [&] {
                if (existed) {
                    write_file(target, before);
                } else {
                    std::filesystem::remove(target);
                }
            };
            const std::string where = n <= ops.size() ? "at operation " + ops[n - 1] : "after the end";
            judge(n, n <= ops.size() ? Env{at} : Env{}, lose, where + ", operation " + ops[m - 1] + " lost");
            ++t.lost_renames;
        }
    }
    tallies()[s.name] = t;
    report(s.name, t);
    return t;
}

// ---- systemd-boot -------------------------------------------------------

// The entry systemd-boot would boot by default, LoaderEntryOneShot aside (a
// trial's one-shot is not the persistent default): the model of Rig::boot()
// without its changes. "" when there is no entry.
std::string persistent_pick(const Rig& rig) {
    const auto scheme = id_scheme_for(rig.var(efivar_name::loader_info).value_or(""));
    std::vector<SortItem> items;
    for (const auto& name : rig.entries()) {
        auto n = try_parse_entry_name(name);
        if (!n) continue;
        const auto e = parse_bls_entry(read_file(rig.esp / "loader/entries" / name), name);
        SortItem it;
        it.file_name = name;
        it.counter = n->counter;
        it.sort_key = e.sort_key;
        it.version = e.version;
        items.push_back(it);
    }
    sort_like_systemd_boot(items, scheme);
    DefaultInputs in;
    in.efi_default = rig.var(efivar_name::loader_entry_default);
    const auto conf = LoaderConf::parse(rig.conf(), "loader.conf");
    in.conf_default = conf.get("default");
    auto idx = pick_default_entry(items, in, scheme);
    return idx ? items[*idx].file_name : "";
}

std::vector<std::string> sd_cmd(const Rig& rig, std::vector<std::string> rest) {
    std::vector<std::string> argv{NIXBOOT_BIN,
                                  "--esp",
                                  rig.esp.string(),
                                  "--profile",
                                  rig.profile.string(),
                                  "--efivars",
                                  rig.efivars.string(),
                                  "--state",
                                  rig.state.string(),
                                  "--config",
                                  (rig.tmp / "nixboot.conf").string()};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return argv;
}

// Parsing, status and G1 on systemd-boot.
std::string sd_problems(const Rig& rig, const std::vector<std::string>& status_argv, const Env& env = {}) {
    try {
        for (const auto& name : rig.entries())
            if (!name.starts_with('.')) parse_bls_entry(read_file(rig.esp / "loader/entries" / name), name);
        LoaderConf::parse(rig.conf(), "loader.conf");
        read_journal(rig.state);
        if (auto p = status_problem(run_program(status_argv, env)); !p.empty()) return p;
        const std::string pick = persistent_pick(rig);
        if (pick.empty()) return "";  // no entry at all (a temp file is none)
        if (pick.find('+') != std::string::npos) return "systemd-boot's default is not good: " + pick;
        const auto e = parse_bls_entry(read_file(rig.esp / "loader/entries" / pick), pick);
        std::vector<std::string> files = e.initrds;
        if (e.kernel) files.push_back(*e.kernel);
        for (const auto& file : files)
            if (!std::filesystem::is_regular_file(rig.esp / std::filesystem::path(file).relative_path()))
                return "the default " + pick + " lacks " + file;
    } catch (const std::exception& ex) {
        return ex.what();
    }
    return "";
}

Files sd_good_files(const Rig& rig) {
    Files out;
    for (const auto& [rel, content] : rig.good_files())
        if (content != "<missing>") out[(rig.esp / std::filesystem::path(rel).relative_path()).string()] = content;
    return out;
}

// A systemd-boot machine (Rig) and a command run against it.
// `finish_args`: what finishes the job after a crash (default: `args` again).
Subject sd_subject(const std::string& name, Rig& rig, std::vector<std::string> args,
                   std::vector<std::string> finish_args = {}) {
    if (finish_args.empty()) finish_args = args;
    Subject s;
    s.name = "systemd-boot " + name;
    s.dirs = {rig.esp, rig.efivars, rig.state};
    s.profile = rig.profile;
    s.act = [&rig, args](const Env& env) { return run_program(sd_cmd(rig, args), env); };
    s.finish = [&rig, finish_args] { return run_program(sd_cmd(rig, finish_args)); };
    s.problems = [&rig] { return sd_problems(rig, sd_cmd(rig, {"--json", "status"})); };
    s.protected_files = [&rig] { return sd_good_files(rig); };
    s.digest = [&rig] { return rig.summary(); };
    return s;
}

Rig& sd_rig(Rig& rig) {
    write_file(rig.tmp / "nixboot.conf", "");
    return rig;
}

void install_ok(const Rig& rig, std::vector<std::string> args = {"install"}) {
    auto r = run_program(sd_cmd(rig, std::move(args)));
    INFO(r.err);
    REQUIRE(r.status == 0);
}

}  // namespace

TEST_CASE("crash points: systemd-boot install", "[crash][sdboot]") {
    SECTION("first") {
        Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
        enumerate(sd_subject("install (first)", sd_rig(rig), {"install"}));
    }
    SECTION("no-op") {
        Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
        install_ok(sd_rig(rig));
        enumerate(sd_subject("install (no-op)", rig, {"install"}));
    }
    SECTION("new generation") {
        Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
        install_ok(sd_rig(rig));
        nixboot::test::make_generation(rig.store, rig.profile, 4);
        enumerate(sd_subject("install (new generation)", rig, {"install"}));
    }
    SECTION("garbage collection") {
        Rig rig(5, "systemd-boot 252.39-1~deb12u1", 4);
        install_ok(sd_rig(rig));
        for (unsigned n : {1u, 2u})
            std::filesystem::remove(rig.profile.parent_path() / ("system-" + std::to_string(n) + "-link"));
        enumerate(sd_subject("install (garbage collection)", rig, {"install"}));
    }
    SECTION("--keep") {
        Rig rig(5, "systemd-boot 252.39-1~deb12u1", 4);
        install_ok(sd_rig(rig));
        enumerate(sd_subject("install --keep 1", rig, {"install", "--keep", "1"}));
    }
}

TEST_CASE("crash points: systemd-boot try, mark-good, mark-bad, rollback", "[crash][sdboot]") {
    Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
    install_ok(sd_rig(rig));
    SECTION("try") { enumerate(sd_subject("try", rig, {"try", "3"})); }
    SECTION("mark-good") {
        install_ok(rig, {"try", "3"});
        rig.boot();
        enumerate(sd_subject("mark-good", rig, {"mark-good"}));
    }
    SECTION("mark-bad") {
        install_ok(rig, {"try", "3"});
        rig.boot();
        enumerate(sd_subject("mark-bad", rig, {"mark-bad", "3"}));
    }
}

// The rollback is journaled first; a cut after that is finished by the next
// install (Machine::finish_interrupted_rollback), also one after the default
// moved and before the profile did.
TEST_CASE("crash points: systemd-boot rollback", "[crash][sdboot]") {
    Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
    install_ok(sd_rig(rig));
    install_ok(rig, {"try", "3"});
    rig.boot();
    install_ok(rig, {"mark-good"});
    enumerate(sd_subject("rollback", rig, {"rollback"}, {"install"}));
}

// The check's promotion: its `good` verdict lives in /run until the journal
// append makes it durable; a cut before that append ends as a trial that
// reached no verdict (marked bad by the next boot's check, as when the power
// fails before the check ran). From the append on, the next boot's check
// finishes the promotion (finish_interrupted_promotion), also one cut after
// the default moved and before the profile did (G3).
TEST_CASE("crash points: systemd-boot promotion by the check", "[crash][sdboot][health]") {
    CheckRig c;
    c.check_script("required/ok", "exit 0");
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    REQUIRE(c.boot() == "nixos-generation-3+0-1.conf");
    Subject s;
    s.name = "systemd-boot promotion (check)";
    s.dirs = {c.rig.esp, c.rig.efivars, c.rig.state};
    s.volatile_dirs = {c.run};
    s.profile = c.rig.profile;
    s.act = [&c](const Env& env) {
        std::vector<std::string> argv{NIXBOOT_BIN,
                                      "--esp",
                                      c.rig.esp.string(),
                                      "--profile",
                                      c.rig.profile.string(),
                                      "--efivars",
                                      c.rig.efivars.string(),
                                      "--state",
                                      c.rig.state.string(),
                                      "--config",
                                      c.config.string(),
                                      "check",
                                      "--run",
                                      c.run.string(),
                                      "--cmdline",
                                      c.cmdline.string(),
                                      "--uptime",
                                      c.uptime.string()};
        Env all{"NIXBOOT_REBOOT_COMMAND=" + c.reboot.string(), "NIXBOOT_SYSTEMD_RUN=" + c.systemd_run.string(),
                "NIXBOOT_SYSTEMCTL=" + c.systemctl.string(),
                "NIXBOOT_CURRENT_SYSTEM=" + (c.rig.store / "system-2").string()};
        all.insert(all.end(), env.begin(), env.end());
        return run_program(argv, all);
    };
    // The power cut: the next boot (the loader picks, stage 1 records) and its check.
    s.finish = [&c] {
        c.boot();
        return c.check();
    };
    s.problems = [&c] {
        std::vector<std::string> argv{NIXBOOT_BIN,
                                      "--esp",
                                      c.rig.esp.string(),
                                      "--profile",
                                      c.rig.profile.string(),
                                      "--efivars",
                                      c.rig.efivars.string(),
                                      "--state",
                                      c.rig.state.string(),
                                      "--config",
                                      c.config.string(),
                                      "--json",
                                      "status"};
        auto p = sd_problems(c.rig, argv);
        if (!p.empty()) return p;
        std::size_t promotions = 0;
        for (const auto& rec : read_journal(c.rig.state).records)
            if (rec.generation == 3 && rec.event == JournalEvent::promote) ++promotions;
        return promotions <= 1 ? std::string() : "promoted " + std::to_string(promotions) + " times";
    };
    s.protected_files = [&c] { return sd_good_files(c.rig); };
    s.point_of_no_return = [](const std::string& op) {
        return op.find(" append ") != std::string::npos && op.ends_with("/journal");
    };
    s.digest = [&c] {  // without the variables the next boot sets (which entry it picked)
        auto text = c.rig.summary();
        auto vars = text.find("\nvars:");
        return text.erase(vars, text.find('\n', vars + 1) - vars);
    };
    enumerate(s);
}

// ---- GRUB ---------------------------------------------------------------

namespace {

// A GRUB machine: the Rig's profile and store, its ESP as the boot dir
// (grub.cfg, grubenv, the state copies, kernels/), the real grub-editenv.
struct GrubMachine {
    Rig& rig;
    std::string editenv;
    std::filesystem::path conf = rig.tmp / "nixboot-grub.conf";
    std::filesystem::path cmdline = rig.tmp / "cmdline";

    GrubMachine(Rig& r, std::string grub_editenv) : rig(r), editenv(std::move(grub_editenv)) {
        write_file(cmdline, "ro quiet\n");
        write_file(conf, "grub-device-path = /\ngrub-probe-boot = fs=ext2\ngrub-cmdline = " + cmdline.string() + "\n");
    }

    std::vector<std::string> cmd(std::vector<std::string> rest) const {
        std::vector<std::string> argv{NIXBOOT_BIN,         "--bootloader",     "grub",
                                      "--config",          conf.string(),      "--esp",
                                      rig.esp.string(),    "--profile",        rig.profile.string(),
                                      "--state",           rig.state.string(), "--efivars",
                                      rig.efivars.string()};
        argv.insert(argv.end(), rest.begin(), rest.end());
        return argv;
    }
    void ok(std::vector<std::string> args) const {
        auto r = run_program(cmd(std::move(args)));
        INFO(r.out << r.err);
        REQUIRE(r.status == 0);
    }
    std::string env() const {
        auto r = run_program({editenv, (rig.esp / "grub/grubenv").string(), "list"});
        return r.status == 0 ? r.out : "grub-editenv list failed: " + r.err;
    }
    // GRUB boots the armed trial: its script saves one try less before the
    // kernel loads, the kernel command line names the trial.
    void boot_trial(const std::string& id) const {
        REQUIRE(run_program({editenv, (rig.esp / "grub/grubenv").string(), "set", "nixboot_tries=0"}).status == 0);
        write_file(cmdline, "nixboot.entry=" + id + " nixboot.trial=" + id + " nixboot.tries=0\n");
    }

    // grub.cfg's menu entries: id -> the boot-dir files its linux and initrd lines load.
    std::multimap<std::string, std::vector<std::string>> menu() const {
        std::multimap<std::string, std::vector<std::string>> out;
        const auto cfg_path = rig.esp / "grub/grub.cfg";
        if (!std::filesystem::exists(cfg_path)) return out;
        std::string id;
        std::vector<std::string> files;
        auto first_word = [](const std::string& line, std::size_t from) {
            const auto open = line.find('\'', from);
            return line.substr(open + 1, line.find('\'', open + 1) - open - 1);
        };
        for (const auto& line : nixboot::test::lines_of(read_file(cfg_path))) {
            if (line.starts_with("menuentry ")) {
                id = first_word(line, line.find(" --id "));
                files.clear();
            } else if (line.starts_with("  linux ") || line.starts_with("  initrd ")) {
                files.push_back(first_word(line, 0));
            } else if (line == "}" && !id.empty()) {
                out.emplace(id, files);
                id.clear();
            }
        }
        return out;
    }

    // What GRUB boots when no trial is armed, read from grub.cfg and
    // grubenv as its script does: nixboot_default when it names a menu
    // entry; an unknown one falls back to the first entry, which is the
    // `set default=` of the file.
    std::string persistent_pick() const {
        const auto cfg_path = rig.esp / "grub/grub.cfg";
        if (!std::filesystem::exists(cfg_path)) return "";
        const auto items = menu();
        for (const auto& line : nixboot::test::lines_of(env()))
            if (line.starts_with("nixboot_default=")) {
                const auto id = line.substr(std::string_view("nixboot_default=").size());
                if (!id.empty() && items.count(id)) return id;
            }
        const std::string cfg = read_file(cfg_path);
        const auto at = cfg.find("\nset default='");
        if (at == std::string::npos) return "";
        const auto from = at + std::string_view("\nset default='").size();
        return cfg.substr(from, cfg.find('\'', from) - from);
    }

    std::map<std::string, std::string> states() const {
        std::map<std::string, std::string> out;
        const auto r = run_program(cmd({"--json", "list"}));
        if (r.status != 0) return out;
        for (const auto& e : nlohmann::json::parse(r.out)) out[e.at("id")] = e.at("state");
        return out;
    }

    // Parsing, status and G1 on GRUB.
    std::string problems() const {
        try {
            if (auto p = status_problem(run_program(cmd({"--json", "status"}))); !p.empty()) return p;
            const auto list = run_program(cmd({"--json", "list"}));
            if (list.status != 0) return "list --json failed: " + list.err;
            // A copy written in place may be torn; the other one is whole.
            std::string torn_copies;
            int whole = 0, present = 0;
            for (const auto slot : {"a", "b"}) {
                const auto path = rig.esp / ("grub/nixboot-state." + std::string(slot));
                if (!std::filesystem::exists(path)) continue;
                ++present;
                try {
                    grub::parse_state_slot(read_file(path), path.string());
                    ++whole;
                } catch (const std::exception& e) {
                    torn_copies += std::string(" ") + e.what();
                }
            }
            if (present > 0 && whole == 0) return "no state copy parses:" + torn_copies;
            if (std::filesystem::exists(rig.esp / "grub/grubenv"))
                grub::parse_grubenv(read_file(rig.esp / "grub/grubenv"), "grubenv");
            read_journal(rig.state);
            const auto pick = persistent_pick();
            if (pick.empty()) return "";  // no grub.cfg yet: GRUB's own menu, untouched
            const auto st = states();
            if (auto it = st.find(pick); it == st.end() || it->second != "good")
                return "GRUB's default " + pick + " is not good (" + (it == st.end() ? "unknown" : it->second) + ")";
            const auto items = menu();
            for (auto [it, end] = items.equal_range(pick); it != end; ++it)
                for (const auto& file : it->second)
                    if (!std::filesystem::is_regular_file(rig.esp / std::filesystem::path(file).relative_path()))
                        return "the default " + pick + " lacks " + file;
        } catch (const std::exception& ex) {
            return ex.what();
        }
        return "";
    }

    // The boot-dir files of the entries that are good now (G4).
    Files good_files() const {
        Files out;
        const auto st = states();
        for (const auto& [id, files] : menu()) {
            if (auto it = st.find(id); it == st.end() || it->second != "good") continue;
            for (const auto& file : files) {
                const auto path = rig.esp / std::filesystem::path(file).relative_path();
                if (std::filesystem::is_regular_file(path)) out[path.string()] = read_file(path);
            }
        }
        return out;
    }

    // The end state as the loader and the user see it (the state copies'
    // sequence numbers and which copy is newer aside).
    std::string digest() const {
        std::string out = "list: " + run_program(cmd({"--json", "list"})).out + "env: " + env();
        out += "profile: " + std::filesystem::read_symlink(rig.profile).string() + "\nfiles:";
        for (const auto& [id, files] : menu())
            for (const auto& file : files) out += " " + id + ":" + file;
        out += "\nkernels:";
        if (std::filesystem::exists(rig.esp / "kernels"))
            for (const auto& e : std::filesystem::directory_iterator(rig.esp / "kernels"))
                out += " " + e.path().filename().string();
        return out + "\n";
    }
};

Subject grub_subject(const std::string& name, const GrubMachine& m, std::vector<std::string> args,
                     std::vector<std::string> finish_args = {}) {
    if (finish_args.empty()) finish_args = args;
    Subject s;
    s.name = "GRUB " + name;
    s.dirs = {m.rig.esp, m.rig.efivars, m.rig.state};
    s.profile = m.rig.profile;
    s.act = [&m, args](const Env& env) { return run_program(m.cmd(args), env); };
    s.finish = [&m, finish_args] { return run_program(m.cmd(finish_args)); };
    s.problems = [&m] { return m.problems(); };
    s.protected_files = [&m] { return m.good_files(); };
    s.digest = [&m] { return m.digest(); };
    return s;
}

}  // namespace

TEST_CASE("crash points: GRUB install", "[crash][grub][real]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    SECTION("first") {
        Rig rig(3, "", 2);
        GrubMachine m(rig, grub_editenv);
        enumerate(grub_subject("install (first)", m, {"install"}));
    }
    SECTION("new generation") {
        Rig rig(3, "", 2);
        GrubMachine m(rig, grub_editenv);
        m.ok({"install"});
        nixboot::test::make_generation(rig.store, rig.profile, 4);
        enumerate(grub_subject("install (new generation)", m, {"install"}));
    }
    SECTION("garbage collection") {
        Rig rig(5, "", 4);
        GrubMachine m(rig, grub_editenv);
        m.ok({"install"});
        for (unsigned n : {1u, 2u})
            std::filesystem::remove(rig.profile.parent_path() / ("system-" + std::to_string(n) + "-link"));
        enumerate(grub_subject("install (garbage collection)", m, {"install"}));
    }
    SECTION("--keep") {
        Rig rig(5, "", 4);
        GrubMachine m(rig, grub_editenv);
        m.ok({"install"});
        enumerate(grub_subject("install --keep 1", m, {"install", "--keep", "1"}));
    }
}

TEST_CASE("crash points: GRUB try, mark-good, mark-bad, rollback", "[crash][grub][real]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    Rig rig(3, "", 2);
    GrubMachine m(rig, grub_editenv);
    m.ok({"install"});
    SECTION("try") { enumerate(grub_subject("try", m, {"try", "3"})); }
    SECTION("mark-good") {
        m.ok({"try", "3"});
        m.boot_trial("nixos-generation-3");
        enumerate(grub_subject("mark-good", m, {"mark-good"}));
    }
    SECTION("mark-bad") {
        m.ok({"try", "3"});
        m.boot_trial("nixos-generation-3");
        enumerate(grub_subject("mark-bad", m, {"mark-bad", "3"}));
    }
    SECTION("rollback") {
        m.ok({"try", "3"});
        m.boot_trial("nixos-generation-3");
        m.ok({"mark-good"});
        enumerate(grub_subject("rollback", m, {"rollback"}, {"install"}));
    }
}

namespace {

enum class GrubEnv { writable, unwritable };

// nixboot-stage1 of a boot whose command line m.cmdline holds, with a fresh
// /run (a tmpfs each boot), its env block at esp/grub/grubenv.
RunResult grub_stage1(const GrubMachine& m, const std::filesystem::path& run, const std::filesystem::path& config,
                      const std::filesystem::path& watchdog, const Env& extra = {}) {
    std::filesystem::remove_all(run);
    std::filesystem::create_directories(run);
    Env env = nixboot::test::stage1_env(m.rig.tmp.path());
    env.insert(env.end(), extra.begin(), extra.end());
    return run_program(
        {NIXBOOT_STAGE1_BIN, "--cmdline", m.cmdline.string(), "--efivars", m.rig.efivars.string(), "--run",
         run.string(), "--kmsg", (m.rig.tmp / "kmsg").string(), "--watchdog-device", watchdog.string(), "--config",
         config.string(), "--grubenv", (m.rig.esp / "grub/grubenv").string()},
        env);
}

// GRUB at power-on and stage 1: the trial while grubenv has tries left for
// it (the decrement saved first; where GRUB cannot write its env block,
// nixboot.consume=stage1 leaves that to stage 1), else the persistent
// default with the trial words GRUB adds when the tries are spent; then
// nixboot-stage1. Returns the entry booted.
std::string grub_power_on(const GrubMachine& m, const std::filesystem::path& run, const std::filesystem::path& config,
                          const std::filesystem::path& watchdog, GrubEnv grub_env = GrubEnv::writable) {
    std::string trial, tries;
    for (const auto& line : nixboot::test::lines_of(m.env())) {
        if (line.starts_with("nixboot_trial=")) trial = line.substr(line.find('=') + 1);
        if (line.starts_with("nixboot_tries=")) tries = line.substr(line.find('=') + 1);
    }
    std::string id = m.persistent_pick();
    std::string words;
    if (!trial.empty() && tries == "1") {
        if (grub_env == GrubEnv::writable)
            REQUIRE(run_program({m.editenv, (m.rig.esp / "grub/grubenv").string(), "set", "nixboot_tries=0"}).status ==
                    0);
        id = trial;
        words = " nixboot.trial=" + trial + " nixboot.tries=0";
        if (grub_env == GrubEnv::unwritable) words += " nixboot.consume=stage1";
    } else if (!trial.empty() && tries == "0") {
        words = " nixboot.trial=" + trial + " nixboot.tries=0";
    }
    write_file(m.cmdline, "init=/x nixboot.entry=" + id + words + "\n");
    auto r = grub_stage1(m, run, config, watchdog);
    INFO(r.out << r.err);
    REQUIRE(r.status == 0);
    return id;
}

}  // namespace

// As on systemd-boot: the verdict lives in /run until the journal append;
// from it on, the next boot's check finishes the promotion (grubenv's
// default, the state copies, the profile).
TEST_CASE("crash points: GRUB promotion by the check", "[crash][grub][health][real]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    Rig rig(3, "", 2);
    ::chmod(rig.tmp.path().c_str(), 0755);
    GrubMachine m(rig, grub_editenv);
    const auto run = rig.tmp / "run", checks = rig.tmp / "checks.d", calls = rig.tmp / "calls";
    const auto watchdog = rig.tmp / "watchdog", uptime = rig.tmp / "uptime";
    write_file(watchdog, "");
    write_file(uptime, "30.00 40.00\n");
    write_file(rig.tmp / "kmsg", "");
    nixboot::test::write_script(checks / "required/ok", "#!/bin/sh\nexit 0\n");
    write_file(m.conf, read_file(m.conf) + "checks-dir = " + checks.string() +
                           "\nwatchdog-device = " + watchdog.string() + "\nverdict-timeout = 600\n");
    // Never the machine's own reboot, systemctl or activation.
    const auto bin = rig.tmp / "bin";
    nixboot::test::write_recorder(bin / "reboot", calls, "reboot");
    nixboot::test::write_recorder(bin / "systemd-run", calls, "systemd-run");
    nixboot::test::write_recorder(bin / "systemctl", calls, "systemctl");
    for (unsigned n = 1; n <= 3; ++n)
        nixboot::test::write_recorder(rig.store / ("system-" + std::to_string(n)) / "bin/switch-to-configuration",
                                      calls, "switch-" + std::to_string(n));
    const Env tools{"NIXBOOT_REBOOT_COMMAND=" + (bin / "reboot").string(),
                    "NIXBOOT_SYSTEMD_RUN=" + (bin / "systemd-run").string(),
                    "NIXBOOT_SYSTEMCTL=" + (bin / "systemctl").string(),
                    "NIXBOOT_CURRENT_SYSTEM=" + (rig.store / "system-2").string()};
    m.ok({"install"});
    m.ok({"try", "3"});
    REQUIRE(grub_power_on(m, run, m.conf, watchdog) == "nixos-generation-3");
    auto check = [&m, run, uptime, tools](const Env& env) {
        Env all = tools;
        all.insert(all.end(), env.begin(), env.end());
        return run_program(
            m.cmd({"check", "--run", run.string(), "--cmdline", m.cmdline.string(), "--uptime", uptime.string()}), all);
    };
    Subject s;
    s.name = "GRUB promotion (check)";
    s.dirs = {rig.esp, rig.efivars, rig.state};
    s.volatile_dirs = {run};
    s.profile = rig.profile;
    s.act = check;
    s.finish = [&m, run, watchdog, check] {
        grub_power_on(m, run, m.conf, watchdog);
        return check({});
    };
    s.problems = [&m] {
        auto p = m.problems();
        if (!p.empty()) return p;
        std::size_t promotions = 0;
        for (const auto& rec : read_journal(m.rig.state).records)
            if (rec.generation == 3 && rec.event == JournalEvent::promote) ++promotions;
        return promotions <= 1 ? std::string() : "promoted " + std::to_string(promotions) + " times";
    };
    s.protected_files = [&m] { return m.good_files(); };
    s.point_of_no_return = [](const std::string& op) {
        return op.find(" append ") != std::string::npos && op.ends_with("/journal");
    };
    // Without which entry the next boot booted: a cut after the verdict and
    // before grubenv's default moved boots the old default once more.
    s.digest = [&m] {
        auto text = m.digest();
        for (const std::string word : {"\"booted\":true,", "\"booted\":false,"})
            for (auto at = text.find(word); at != std::string::npos; at = text.find(word)) text.erase(at, word.size());
        return text;
    };
    enumerate(s);
}

// Stage 1's try consumption: GRUB could not write its env block (on btrfs, a
// RAID, ...), booted the trial with nixboot.consume=stage1, and
// nixboot-stage1 saves the decrement on the mounted /boot. A cut before that
// write leaves GRUB's try unspent: the next power-on boots the trial once more
// and consumes it then (a repeat, never a lost fallback); after it, the next
// power-on falls back to the good default. The loader's default stays good
// throughout (G1); the trial ends consumed either way.
TEST_CASE("crash points: GRUB try consumed by stage 1", "[crash][grub][stage1][real]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    Rig rig(3, "", 2);
    GrubMachine m(rig, grub_editenv);
    const auto run = rig.tmp / "run", watchdog = rig.tmp / "watchdog", config = m.conf;
    write_file(watchdog, "");
    write_file(rig.tmp / "kmsg", "");
    m.ok({"install"});
    m.ok({"try", "3"});
    write_file(m.cmdline,
               "init=/x nixboot.entry=nixos-generation-3 nixboot.trial=nixos-generation-3 nixboot.tries=0 "
               "nixboot.consume=stage1\n");
    Subject s;
    s.name = "GRUB try consumed by stage 1";
    s.dirs = {rig.esp, rig.efivars, rig.state};
    s.volatile_dirs = {run};
    s.profile = rig.profile;
    s.act = [&m, run, config, watchdog](const Env& env) { return grub_stage1(m, run, config, watchdog, env); };
    s.finish = [&m, run, config, watchdog] {
        grub_power_on(m, run, config, watchdog, GrubEnv::unwritable);
        return RunResult{0, "", ""};
    };
    s.problems = [&m] { return m.problems(); };
    s.protected_files = [&m] { return m.good_files(); };
    // Which entry the next boot booted aside (the trial once more, or the default).
    s.digest = [&m] {
        auto text = m.digest();
        for (const std::string word : {"\"booted\":true,", "\"booted\":false,"})
            for (auto at = text.find(word); at != std::string::npos; at = text.find(word)) text.erase(at, word.size());
        return text;
    };
    const auto t = enumerate(s);
    CHECK(t.checked >= 2);  // at least the env block's write, whole and torn
    // The uninterrupted consumption, then a power-on: GRUB falls back.
    write_file(m.cmdline,
               "init=/x nixboot.entry=nixos-generation-3 nixboot.trial=nixos-generation-3 nixboot.tries=0 "
               "nixboot.consume=stage1\n");
    REQUIRE(grub_stage1(m, run, config, watchdog).status == 0);
    CHECK(grub_power_on(m, run, config, watchdog, GrubEnv::unwritable) == "nixos-generation-2");
}
