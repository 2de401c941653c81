// nixboot_bench: 1000 generations (a specialisation on every 4th), timed
// install / no-op install / install after one new generation / try / status,
// with the I/O counters (files written, renamed, fsynced, removed) of each.
// Usage: nixboot_bench [GENERATIONS] [--bootloader systemd-boot|grub] [--dir DIR]
#include "boot/counter.hpp"
#include "boot/efivars.hpp"
#include "boot/generations.hpp"
#include "boot/grub/grubenv.hpp"
#include "boot/sdboot.hpp"
#include "boot/machine.hpp"
#include "boot/util/dir.hpp"
#include "boot/util/error.hpp"

#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

using namespace nixboot;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& s) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << s;
}

std::string spec_json(const fs::path& top, unsigned n, const std::string& label) {
    // distinct kernels per 10 generations (kernels are shared in real life), distinct initrds
    std::string kernel = (top.parent_path() / ("kernel-" + std::to_string(n / 10))).string();
    if (!fs::exists(kernel))
        write(kernel, std::string(64 * 1024, static_cast<char>('a' + n / 10 % 26)) + std::to_string(n / 10));
    write(top / "initrd", "initrd " + top.string() + std::string(16 * 1024, 'i'));
    write(top / "init", "#!/bin/sh\n");
    return "{\"org.nixos.bootspec.v1\": {\"label\": \"" + label + "\", \"kernel\": \"" + kernel + "\", \"initrd\": \"" +
           (top / "initrd").string() + "\", \"init\": \"" + (top / "init").string() + "\", \"toplevel\": \"" +
           top.string() + "\", \"system\": \"x86_64-linux\", \"kernelParams\": [\"loglevel=4\", \"quiet\"]}";
}

void make_generation(const fs::path& store, const fs::path& profile, unsigned n) {
    auto top = store / ("system-" + std::to_string(n));
    std::string json = spec_json(top, n, "NixOS 24.05 (Linux 6.6." + std::to_string(n % 50) + ")");
    if (n % 4 == 0) {
        auto sub = store / ("system-" + std::to_string(n) + "-debug");
        json += ", \"org.nixos.specialisation.v1\": {\"debug\": " + spec_json(sub, n, "NixOS debug") + "}}";
    }
    json += "}";
    write(top / "boot.json", json);
    fs::create_directories(profile.parent_path());
    auto link = profile.parent_path() / ("system-" + std::to_string(n) + "-link");
    fs::remove(link);
    fs::create_directory_symlink(top, link);
}

// Each file under the given roots by its identity (size, mtime, inode; a
// symlink by its target): what a step created, changed and removed is the
// difference of two of these, whatever wrote it.
using Snapshot = std::map<std::string, std::string>;

Snapshot snapshot(const std::vector<fs::path>& roots) {
    Snapshot out;
    for (const auto& root : roots) {
        if (!fs::exists(root)) continue;
        for (const auto& f : fs::recursive_directory_iterator(root)) {
            struct stat st {};
            if (::lstat(f.path().c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
            std::string id = S_ISLNK(st.st_mode)
                                 ? "-> " + fs::read_symlink(f.path()).string()
                                 : std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
                                       std::to_string(st.st_mtim.tv_nsec) + " " + std::to_string(st.st_ino);
            out[f.path().string()] = std::move(id);
        }
    }
    return out;
}

// "N created, N changed, N removed: NAME, ..." (names relative to `base`).
std::string difference(const Snapshot& a, const Snapshot& b, const fs::path& base, unsigned* total = nullptr) {
    unsigned created = 0, changed = 0, removed = 0;
    std::string names;
    auto note = [&](const std::string& path, const char* what) {
        names += std::string(names.empty() ? "" : ", ") + what + " " + fs::path(path).lexically_relative(base).string();
    };
    for (const auto& [path, id] : b) {
        auto it = a.find(path);
        if (it == a.end()) {
            ++created;
            note(path, "+");
        } else if (it->second != id) {
            ++changed;
            note(path, "~");
        }
    }
    for (const auto& [path, id] : a)
        if (!b.count(path)) {
            ++removed;
            note(path, "-");
        }
    if (total) *total += created + changed + removed;
    return std::to_string(created) + " created, " + std::to_string(changed) + " changed, " + std::to_string(removed) +
           " removed: " + names;
}

// What the loader does as it boots the armed trial: systemd-boot reads and
// deletes the one-shot, renames the entry (+1-0 -> +0-1) and sets
// LoaderEntrySelected and LoaderBootCountPath; GRUB decrements nixboot_tries
// in grubenv. A stand-in (the firmware's writes, not nixboot's).
void loader_boots_trial(Bootloader which, const fs::path& esp, const fs::path& efivars, const std::string& id) {
    if (which == Bootloader::grub) {
        auto boot = RootDir::open(esp);
        auto env = grub::read_grubenv(boot, "grub/grubenv").value_or(grub::GrubEnv{});
        const unsigned tries = static_cast<unsigned>(std::stoul(env.get("nixboot_tries").value_or("1")));
        env.set("nixboot_tries", std::to_string(tries > 0 ? tries - 1 : 0));
        grub::write_grubenv(boot, "grub/grubenv", env, Sync::no);
        return;
    }
    EfiVars vars(efivars);
    vars.remove(efivar_name::loader_entry_oneshot);
    for (const auto& f : fs::directory_iterator(esp / "loader/entries")) {
        const auto name = f.path().filename().string();
        auto n = try_parse_entry_name(name);
        if (!n || n->stem != id || !n->counter) continue;
        const auto next = format_entry_name(decrement(*n));
        fs::rename(f.path(), esp / "loader/entries" / next);
        vars.set_string(efivar_name::loader_entry_selected, loader_entry_id(name, IdScheme::with_counter));
        vars.set_string(efivar_name::loader_boot_count_path, "\\loader\\entries\\" + next);
        return;
    }
    throw Error("the stand-in loader found no counted entry of " + id);
}

struct Row {
    std::string step;
    double ms;      // wall clock
    double cpu_ms;  // user + system CPU of this process (less sensitive to a loaded machine)
    IoStats io;
};

double cpu_ms_now() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto ms = [](const timeval& t) { return t.tv_sec * 1000.0 + t.tv_usec / 1000.0; };
    return ms(ru.ru_utime) + ms(ru.ru_stime);
}

Row measure(const std::string& step, const std::function<void()>& f) {
    reset_io_stats();
    auto c0 = cpu_ms_now();
    auto t0 = std::chrono::steady_clock::now();
    f();
    auto t1 = std::chrono::steady_clock::now();
    auto c1 = cpu_ms_now();
    return {step, std::chrono::duration<double, std::milli>(t1 - t0).count(), c1 - c0, io_stats()};
}

int run(unsigned count, Bootloader which, fs::path root) {
    auto esp = root / "esp", store = root / "store", profile = root / "profiles" / "system", efivars = root / "efivars",
         state = root / "state";
    fs::create_directories(esp);
    fs::create_directories(efivars);
    auto t0 = std::chrono::steady_clock::now();
    for (unsigned n = 1; n <= count; ++n) make_generation(store, profile, n);
    fs::create_symlink("system-" + std::to_string(count) + "-link", profile);
    if (which == Bootloader::systemd_boot)
        EfiVars(efivars).set_string(efivar_name::loader_info, "systemd-boot 252.39-1~deb12u1");
    auto setup_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    BackendOptions bo;
    bo.esp = esp;
    bo.efivars = efivars;
    bo.state = state;
    if (const char* e = std::getenv("NIXBOOT_BENCH_EXTRA")) {  // "key=value" for backend-specific options
        std::string kv = e;
        if (auto eq = kv.find('='); eq != std::string::npos) bo.extra[kv.substr(0, eq)] = kv.substr(eq + 1);
    } else if (which == Bootloader::grub) {
        bo.extra["grub-probe-boot"] = "fs=ext2";  // the temp dir stands for a plain ext2 /boot GRUB can write
    }
    auto backend = make_backend(which, bo);
    MachineOptions mo;
    mo.profile = profile;
    mo.state = state;
    mo.tries = 1;
    Machine m(*backend, mo);

    std::vector<Row> rows;
    InstallReport first;
    rows.push_back(measure("install (first)", [&] { first = m.install(); }));
    rows.push_back(measure("install (no-op)", [&] { m.install(); }));
    rows.push_back(measure("install (no-op, again)", [&] { m.install(); }));
    double best_noop = std::min(rows[1].ms, rows[2].ms);
    for (int i = 0; i < 5; ++i) best_noop = std::min(best_noop, measure("", [&] { m.install(); }).ms);
    make_generation(store, profile, count + 1);
    InstallReport one;
    rows.push_back(measure("install (+1 generation)", [&] { one = m.install(); }));
    // The new generation is a trial; try it, boot it (the loader's part, a
    // stand-in) and promote it: one whole trial cycle, with every file it
    // creates, changes or removes.
    const std::vector<fs::path> roots{esp, efivars, state, profile.parent_path()};
    const auto trial = "nixos-generation-" + std::to_string(count + 1);
    auto before_try = snapshot(roots);
    rows.push_back(measure("try " + std::to_string(count + 1), [&] { m.try_generation(count + 1, {}); }));
    auto after_try = snapshot(roots);
    loader_boots_trial(which, esp, efivars, trial);
    auto booted = snapshot(roots);
    rows.push_back(measure("verdict: mark-good", [&] { m.mark_good(trial, "bench"); }));
    auto promoted = snapshot(roots);
    Status st;
    rows.push_back(measure("status", [&] { st = m.status(); }));

    std::printf("nixboot_bench: %s, %u generations (+%u specialisations), root %s\n",
                std::string(to_string(which)).c_str(), count, count / 4, root.c_str());
    std::printf("setup of the fake generations: %.0f ms; entries after first install: %zu added\n", setup_ms,
                first.sync.added.size() + (first.adopted ? 1 : 0));
    std::printf("%-26s %10s %10s %8s %8s %8s %8s\n", "step", "wall ms", "cpu ms", "written", "renamed", "fsynced",
                "removed");
    for (const auto& r : rows)
        std::printf("%-26s %10.2f %10.2f %8llu %8llu %8llu %8llu\n", r.step.c_str(), r.ms, r.cpu_ms,
                    static_cast<unsigned long long>(r.io.writes), static_cast<unsigned long long>(r.io.renames),
                    static_cast<unsigned long long>(r.io.fsyncs), static_cast<unsigned long long>(r.io.removes));
    std::printf("+1 generation: added %zu entries, updated %zu, removed %zu\n", one.sync.added.size(),
                one.sync.updated.size(), one.sync.removed.size());
    for (const auto& f : fs::recursive_directory_iterator(esp))
        if (f.path().filename() == "grub.cfg" && f.is_regular_file())
            std::printf("%s: %ju bytes\n", fs::relative(f.path(), root).c_str(),
                        static_cast<std::uintmax_t>(f.file_size()));
    unsigned by_nixboot = 0;
    std::printf("trial cycle, files by step:\n  try:      %s\n  loader:   %s\n  verdict:  %s\n",
                difference(before_try, after_try, root, &by_nixboot).c_str(),
                difference(after_try, booted, root).c_str(), difference(booted, promoted, root, &by_nixboot).c_str());
    std::printf("trial cycle: %u files created, changed or removed by nixboot (try + verdict)\n", by_nixboot);
    std::printf("status: %zu entries, default %s, next boot %s\n", st.view.entries.size(),
                st.view.persistent_default.value_or("-").c_str(), st.view.next_boot.value_or("-").c_str());
    double best = best_noop;
    bool ok = rows[1].io.writes == 0 && rows[1].io.renames == 0 && rows[1].io.removes == 0 && best < 20.0;
    std::printf("target (no-op install writes nothing, < 20 ms): %s (best of 7: %.2f ms wall; load average %s)\n",
                ok ? "met" : "NOT met", best,
                [] {
                    std::ifstream in("/proc/loadavg");
                    std::string a;
                    in >> a;
                    return a;
                }()
                    .c_str());
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    unsigned count = 1000;
    Bootloader which = Bootloader::systemd_boot;
    fs::path dir;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--bootloader" && i + 1 < argc) {
            auto b = parse_bootloader(argv[++i]);
            if (!b) {
                std::fprintf(stderr, "nixboot_bench: --bootloader: '%s' is not systemd-boot or grub\n", argv[i]);
                return 2;
            }
            which = *b;
        } else if (a == "--dir" && i + 1 < argc) {
            dir = argv[++i];
        } else if (!a.empty() && a.find_first_not_of("0123456789") == std::string::npos && a.size() < 7) {
            count = static_cast<unsigned>(std::stoul(a));
        } else {
            std::fprintf(stderr, "usage: nixboot_bench [GENERATIONS] [--bootloader systemd-boot|grub] [--dir DIR]\n");
            return 2;
        }
    }
    spdlog::set_level(spdlog::level::warn);
    bool temp = dir.empty();
    if (temp) {
        std::string tmpl = (fs::temp_directory_path() / "nixboot-bench-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) {
            std::perror("nixboot_bench: mkdtemp");
            return 1;
        }
        dir = tmpl;
    }
    int rc = 1;
    try {
        rc = run(count, which, dir);
    } catch (const Error& e) {
        std::fprintf(stderr, "nixboot_bench: %s\n", e.what());
    }
    if (temp) {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    return rc;
}
