// A temporary systemd-boot machine for the backend, state-machine and CLI
// tests: ESP, profile with fake generations, efivars directory, state dir;
// plus a model of what systemd-boot does at boot (pick, consume, rename).
#pragma once

#include "boot/bls_entry.hpp"
#include "boot/efivars.hpp"
#include "boot/generations.hpp"
#include "boot/journal.hpp"
#include "boot/machine.hpp"
#include "boot/sdboot.hpp"
#include "boot/util/dir.hpp"
#include "tests/boot/util/test_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nixboot::test {

struct Rig {
    TempDir tmp;
    std::filesystem::path esp = tmp / "esp";
    std::filesystem::path store = tmp / "store";
    std::filesystem::path profile = tmp / "profiles" / "system";
    std::filesystem::path efivars = tmp / "efivars";
    std::filesystem::path state = tmp / "state";

    explicit Rig(unsigned generations = 3, std::string loader_info = "systemd-boot 252.39-1~deb12u1",
                 unsigned current = 0) {
        std::filesystem::create_directories(esp);
        std::filesystem::create_directories(efivars);
        for (unsigned n = 1; n <= generations; ++n) make_generation(store, profile, n);
        if (generations > 0) point_profile(current ? current : generations);
        if (!loader_info.empty()) EfiVars(efivars).set_string(efivar_name::loader_info, loader_info);
    }

    void point_profile(unsigned n) {
        std::filesystem::remove(profile);
        std::filesystem::create_symlink("system-" + std::to_string(n) + "-link", profile);
    }

    BackendOptions backend_options() const {
        BackendOptions o;
        o.esp = esp;
        o.efivars = efivars;
        o.state = state;
        return o;
    }
    MachineOptions machine_options(unsigned tries = 1, unsigned keep = 0) const {
        MachineOptions m;
        m.profile = profile;
        m.state = state;
        m.tries = tries;
        m.keep = keep;
        return m;
    }

    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        if (!std::filesystem::exists(esp / "loader/entries")) return out;
        for (const auto& e : std::filesystem::directory_iterator(esp / "loader/entries"))
            out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }
    std::optional<std::string> var(const char* name) const { return EfiVars(efivars).get_string(name); }
    std::string conf() const {
        auto p = esp / "loader/loader.conf";
        return std::filesystem::exists(p) ? read_file(p) : "";
    }
    // Every file under the ESP and state dir with its content: "nothing changed".
    std::vector<std::pair<std::string, std::string>> snapshot() const {
        std::vector<std::pair<std::string, std::string>> out;
        for (const auto& root : {esp, efivars, state}) {
            if (!std::filesystem::exists(root)) continue;
            for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
                if (e.is_symlink()) {
                    out.emplace_back(e.path().string(), "-> " + std::filesystem::read_symlink(e.path()).string());
                } else if (e.is_regular_file()) {
                    out.emplace_back(e.path().string(), read_file(e.path()));
                } else {
                    out.emplace_back(e.path().string(), "<dir>");
                }
            }
        }
        std::sort(out.begin(), out.end());
        out.emplace_back("profile", std::filesystem::read_symlink(profile).string());
        return out;
    }

    // The loader.conf default, checked independently of the backend's own
    // reasoning: it names an existing entry file without a counter, and no EFI
    // variable overrides it. Returns the entry ID.
    std::string pinned_good_default() const {
        std::string c = conf();
        auto pos = c.rfind("\ndefault ");
        std::string line = c.starts_with("default ") ? c.substr(8) : pos == std::string::npos ? "" : c.substr(pos + 9);
        line = line.substr(0, line.find('\n'));
        if (line.empty()) return "<no default>";
        if (line.find('+') != std::string::npos || line.find('*') != std::string::npos)
            return "<not a good file: " + line + ">";
        if (!std::filesystem::is_regular_file(esp / "loader/entries" / line)) return "<missing: " + line + ">";
        if (auto d = var(efivar_name::loader_entry_default); d && *d != line) return "<overridden by " + *d + ">";
        return line.substr(0, line.size() - 5);
    }

    // The loader-visible state, without contents that carry times or the
    // temporary root's name (the journal, entry titles, kernel contents): entry
    // file names, the number of kernel files, loader.conf, every EFI variable,
    // the profile. Two runs that did the same thing compare equal.
    std::string summary() const {
        std::string out = "entries:";
        for (const auto& e : entries()) out += " " + e;
        // Kernel copies are named by content, which names the temporary root: count them.
        std::size_t kernels = 0;
        if (std::filesystem::exists(esp / "EFI/nixos"))
            kernels = std::distance(std::filesystem::directory_iterator(esp / "EFI/nixos"), {});
        out += "\nkernel files: " + std::to_string(kernels) + "\nloader.conf: " + conf() + "\nvars:";
        std::vector<std::string> vars;
        for (const auto& e : std::filesystem::directory_iterator(efivars)) {
            std::string value;  // attributes and UTF-16 zero bytes dropped: readable, still exact for ASCII
            for (char c : read_file(e.path()).substr(4))
                if (c >= 0x20 && c < 0x7f) value += c;
            vars.push_back(e.path().filename().string().substr(0, e.path().filename().string().find('-')) + "=" +
                           value);
        }
        std::sort(vars.begin(), vars.end());
        for (const auto& v : vars) out += " " + v;
        return out + "\nprofile: " + std::filesystem::read_symlink(profile).string() + "\n";
    }

    // The files a good entry (no counter) needs, with their content: entry
    // text, kernel, initrds. G4 is "this map only grows".
    std::map<std::string, std::string> good_files() const {
        std::map<std::string, std::string> out;
        for (const auto& name : entries()) {
            if (name.find('+') != std::string::npos) continue;
            auto text = read_file(esp / "loader/entries" / name);
            out["loader/entries/" + name] = text;
            auto e = parse_bls_entry(text, name);
            std::vector<std::string> files = e.initrds;
            if (e.kernel) files.push_back(*e.kernel);
            for (const auto& f : files) {
                auto p = esp / std::filesystem::path(f).relative_path();
                out[f] = std::filesystem::exists(p) ? read_file(p) : "<missing>";
            }
        }
        return out;
    }

    // Every file nixboot keeps parses: entries, loader.conf's default line, the
    // journal. Returns "" or what failed.
    std::string unparsable() const {
        try {
            for (const auto& name : entries()) parse_bls_entry(read_file(esp / "loader/entries" / name), name);
            read_journal(state);
        } catch (const std::exception& e) {
            return e.what();
        }
        return "";
    }

    // LoaderFeatures as a loader sets it at boot (8 bytes, little-endian).
    void set_features(std::uint64_t features) const {
        std::string data("\x07\0\0\0", 4);
        for (int i = 0; i < 8; ++i) data += static_cast<char>((features >> (8 * i)) & 0xff);
        write_file(efivars / (std::string(efivar_name::loader_features) + "-" + loader_vendor_guid), data);
    }
    // The features of systemd-boot 262 (Debian's 262.1 reports these bits and more).
    static constexpr std::uint64_t features_262 = loader_feature::entry_default | loader_feature::entry_oneshot |
                                                  loader_feature::boot_counting | loader_feature::preferred;

    // What systemd-boot does at power-on: choose (one-shot first, which it
    // deletes; `preferred` where LoaderFeatures has it), decrement a counted
    // entry by renaming it, and report it. Returns the file name it boots
    // (after the rename). Torn::yes: the rename was cut short on FAT and left
    // both names on one cluster chain, modelled by a hard link (two names,
    // one file; unlinking one shows in st_nlink).
    enum class Torn { no, yes };
    std::string boot(Torn torn = Torn::no) {
        auto be = SdBootBackend(backend_options());
        auto info = var(efivar_name::loader_info).value_or("");
        auto scheme = id_scheme_for(info);
        std::vector<SortItem> items;
        for (const auto& name : entries()) {
            auto n = try_parse_entry_name(name);
            if (!n) continue;
            SortItem it;
            it.file_name = name;
            it.counter = n->counter;
            auto text = read_file(esp / "loader/entries" / name);
            auto grab = [&](const std::string& key) -> std::optional<std::string> {
                auto p = text.find(key + " ");
                if (p == std::string::npos || (p > 0 && text[p - 1] != '\n')) return std::nullopt;
                auto e = text.find('\n', p);
                return text.substr(p + key.size() + 1, e - p - key.size() - 1);
            };
            it.sort_key = grab("sort-key");
            it.version = grab("version");
            items.push_back(it);
        }
        sort_like_systemd_boot(items, scheme);
        DefaultInputs in;
        in.one_shot = var(efivar_name::loader_entry_oneshot);
        in.efi_default = var(efivar_name::loader_entry_default);
        std::string c = conf();
        if (auto p = c.find("default "); p != std::string::npos && (p == 0 || c[p - 1] == '\n'))
            in.conf_default = c.substr(p + 8, c.find('\n', p) - p - 8);
        EfiVars vars(efivars);
        if (auto f = vars.get_u64(efivar_name::loader_features); f && (*f & loader_feature::preferred)) {
            in.efi_preferred = var(efivar_name::loader_entry_preferred);
            if (auto p = c.find("preferred "); p != std::string::npos && (p == 0 || c[p - 1] == '\n'))
                in.conf_preferred = c.substr(p + 10, c.find('\n', p) - p - 10);
        }
        if (in.one_shot) vars.remove(efivar_name::loader_entry_oneshot);
        auto idx = pick_default_entry(items, in, scheme);
        if (!idx) return "";
        auto name = items[*idx].file_name;
        vars.set_string(efivar_name::loader_entry_selected, loader_entry_id(name, scheme));
        auto n = parse_entry_name(name);
        if (n.counter) {
            auto next = format_entry_name(decrement(n));
            if (torn == Torn::yes)
                std::filesystem::create_hard_link(esp / "loader/entries" / name, esp / "loader/entries" / next);
            else
                std::filesystem::rename(esp / "loader/entries" / name, esp / "loader/entries" / next);
            vars.set_string(efivar_name::loader_boot_count_path, "\\loader\\entries\\" + next);
            return next;
        }
        vars.remove(efivar_name::loader_boot_count_path);
        return name;
    }
};

// Runs `argv` and returns {exit status, stdout, stderr}.
struct RunResult {
    int status = -1;
    std::string out, err;
};
inline RunResult run_program(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
    TempDir io;
    auto outp = io / "out", errp = io / "err";
    // The child's freopen flushes what the parent had buffered: once, here.
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        FILE* o = std::freopen(outp.c_str(), "w", stdout);
        FILE* e = std::freopen(errp.c_str(), "w", stderr);
        (void)o;
        (void)e;
        for (const auto& kv : env) putenv(const_cast<char*>(kv.c_str()));
        std::vector<char*> a;
        for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        execv(a[0], a.data());
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    RunResult r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = std::filesystem::exists(outp) ? read_file(outp) : "";
    r.err = std::filesystem::exists(errp) ? read_file(errp) : "";
    return r;
}

// Runs two programs (as run_program) released at the same instant: both
// children block on one pipe until the parent closes it, then exec.
inline std::array<RunResult, 2> run_together(const std::array<std::vector<std::string>, 2>& argvs,
                                             const std::vector<std::string>& env = {}) {
    TempDir io;
    int gate[2];
    if (::pipe(gate) != 0) throw std::runtime_error("pipe failed");
    std::array<pid_t, 2> pids{};
    std::fflush(stdout);
    std::fflush(stderr);
    for (std::size_t i = 0; i < 2; ++i) {
        pids[i] = fork();
        if (pids[i] == 0) {
            ::close(gate[1]);
            FILE* o = std::freopen((io / ("out" + std::to_string(i))).c_str(), "w", stdout);
            FILE* e = std::freopen((io / ("err" + std::to_string(i))).c_str(), "w", stderr);
            (void)o;
            (void)e;
            for (const auto& kv : env) putenv(const_cast<char*>(kv.c_str()));
            std::vector<char*> a;
            for (const auto& s : argvs[i]) a.push_back(const_cast<char*>(s.c_str()));
            a.push_back(nullptr);
            char byte;
            while (::read(gate[0], &byte, 1) < 0 && errno == EINTR) {}
            execv(a[0], a.data());
            _exit(127);
        }
    }
    ::close(gate[0]);
    ::close(gate[1]);  // the start signal: EOF for both
    std::array<RunResult, 2> out;
    for (std::size_t i = 0; i < 2; ++i) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        out[i].status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        auto o = io / ("out" + std::to_string(i)), e = io / ("err" + std::to_string(i));
        out[i].out = std::filesystem::exists(o) ? read_file(o) : "";
        out[i].err = std::filesystem::exists(e) ? read_file(e) : "";
    }
    return out;
}

}  // namespace nixboot::test
