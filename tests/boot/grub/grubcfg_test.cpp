#include "boot/grub/grubcfg.hpp"

#include "boot/grub/grub_test_support.hpp"
#include "boot/grub/grubenv.hpp"
#include "boot/grub/linux_args.hpp"
#include "boot/util/error.hpp"

#include "tests/catch.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>

using namespace nixboot;
using namespace nixboot::grub;
using nixboot::grub::test::run;
using nixboot::grub::test::slurp;
using nixboot::grub::test::spit;
using nixboot::grub::test::TempDir;

namespace {

const std::filesystem::path golden_dir = std::filesystem::path(NIXBOOT_SOURCE_DIR) / "tests/golden/grub";

// Compares `text` with tests/golden/grub/NAME; NIXBOOT_UPDATE_GOLDEN=1 rewrites it.
void check_golden(const std::string& name, const std::string& text) {
    const auto file = golden_dir / name;
    if (const char* u = std::getenv("NIXBOOT_UPDATE_GOLDEN"); u && std::string(u) == "1") {
        spit(file, text);
        WARN("updated golden file " << file.string());
    }
    REQUIRE(std::filesystem::exists(file));
    CHECK(slurp(file) == text);
}

// grub-script-check on `text`: exit status and output.
grub::test::RunResult script_check(const std::string& text) {
    TempDir tmp;
    spit(tmp / "grub.cfg", text);
    return run({"grub-script-check", (tmp / "grub.cfg").string()});
}

MenuEntry entry(unsigned gen, std::string spec = {}) {
    MenuEntry e;
    e.id = "nixos-generation-" + std::to_string(gen) + (spec.empty() ? "" : "-specialisation-" + spec);
    e.title = entry_title(gen, spec, 1714521600 + gen * 86400, "24.05.20240501.abcdef");
    e.kernel = "/kernels/hash" + std::to_string(gen) + "-linux-6.6.30-bzImage";
    e.initrd = "/kernels/hash" + std::to_string(gen) + "-initrd-linux-6.6.30-initrd";
    e.params = {"init=/nix/store/hash" + std::to_string(gen) + "-nixos-system-x-24.05/init", "loglevel=4"};
    return e;
}

// Generations 3 (with specialisation "fast"), 2, 1: the menu is newest first.
GrubCfgSpec base_spec() {
    GrubCfgSpec s;
    s.entries = {entry(3), entry(3, "fast"), entry(2), entry(1)};
    s.default_id = "nixos-generation-2";
    return s;
}

// Runs the generated preamble (everything before the first menuentry) in bash
// with GRUB's commands replaced by small functions over a real grubenv file:
// `set` assigns, load_env/save_env go through the real grub-editenv (save_env
// fails when the file is not writable), search finds one known UUID. The
// preamble's control flow (if/elif/[ ]/quoting) is shared by sh and GRUB
// script; the VM tests run the same text under real GRUB.
struct Outcome {
    std::string default_entry;
    std::string args;
    std::map<std::string, std::string> env_after;
    std::string output;
};

Outcome simulate(const std::string& cfg, const std::map<std::string, std::string>& env_vars, bool env_writable = true,
                 const std::string& env_rel = "grub/grubenv") {
    TempDir tmp;
    const std::string prefix = (tmp / "grub").string();
    const std::string envfile = (tmp / env_rel).string();
    std::filesystem::create_directories(std::filesystem::path(envfile).parent_path());
    GrubEnv env;
    for (const auto& [k, v] : env_vars) env.set(k, v);
    spit(envfile, format_grubenv(env));
    if (!env_writable) ::chmod(envfile.c_str(), 0444);

    const std::string preamble = cfg.substr(0, cfg.find("\nmenuentry "));
    spit(tmp / "preamble.sh", preamble);
    const std::string script =
        "set() { local kv=\"$1\"; printf -v \"${kv%%=*}\" '%s' \"${kv#*=}\"; }\n"
        "load_env() { shift; local f=\"$1\"; shift; local n; for n in \"$@\"; do\n"
        "  local line; line=$(grub-editenv \"$f\" list | grep \"^$n=\"); [ -n \"$line\" ] && printf -v \"$n\" '%s' \"${line#*=}\"; done; }\n"
        "save_env() { shift; local f=\"$1\"; shift; [ -w \"$f\" ] || { echo 'error: save_env'; return 1; }\n"
        "  local n; for n in \"$@\"; do grub-editenv \"$f\" set \"$n=${!n}\" || return 1; done; }\n"
        // GRUB's "(DEV)/path" becomes the relative path "(esp)/path" (cwd is tmp).
        "search() { local var=\"${3#--set=}\"; [ \"$4\" = 'ESP-UUID' ] || return 1; printf -v \"$var\" '%s' esp; }\n"
        "cd " +
        grub::test::sh_quote(tmp.path().string()) +
        "\n"
        "prefix=" +
        grub::test::sh_quote(prefix) +
        "\n"
        "source " +
        grub::test::sh_quote((tmp / "preamble.sh").string()) +
        "\n"
        "echo \"DEFAULT=${default}\"\necho \"ARGS=${nixboot_args}\"\n";
    spit(tmp / "run.sh", script);
    // Root ignores file modes: run the unwritable case as nobody.
    std::vector<std::string> argv = {"bash", (tmp / "run.sh").string()};
    if (!env_writable) {
        std::filesystem::permissions(tmp.path(), std::filesystem::perms::all);
        std::filesystem::permissions(tmp / "grub", std::filesystem::perms::all);
        argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", (tmp / "run.sh").string()};
    }
    auto r = run(argv);
    INFO(r.output);
    REQUIRE(r.status == 0);
    Outcome o;
    o.output = r.output;
    auto line = [&](const std::string& key) {
        auto p = r.output.find(key + "=");
        REQUIRE(p != std::string::npos);
        auto e = r.output.find('\n', p);
        return r.output.substr(p + key.size() + 1, e - p - key.size() - 1);
    };
    // GRUB's menu: `default` names an entry by --id; an unknown one means
    // the first entry.
    o.default_entry = line("DEFAULT");
    if (cfg.find("--id " + grub_quote(o.default_entry) + " {") == std::string::npos) {
        auto p = cfg.find("--id '", cfg.find("\nmenuentry "));
        REQUIRE(p != std::string::npos);
        p += 6;
        o.default_entry = cfg.substr(p, cfg.find('\'', p) - p);
    }
    o.args = line("ARGS");
    auto back = parse_grubenv(slurp(envfile), envfile);
    for (const auto& l : back.lines())
        if (l.kind == EnvLine::Kind::variable) o.env_after[l.name] = l.value;
    return o;
}

}  // namespace

TEST_CASE("grubcfg: quoting keeps every byte inside one word", "[grub][grubcfg]") {
    CHECK(grub_quote("plain") == "'plain'");
    CHECK(grub_quote("it's") == "'it'\\''s'");
    CHECK(grub_quote("$x ${y} `z` \\ \" ; { }") == "'$x ${y} `z` \\ \" ; { }'");
    CHECK(grub_quote("") == "''");
}

TEST_CASE("grubcfg: titles like NixOS's", "[grub][grubcfg]") {
    CHECK(entry_title(5, "", 1714521600, "24.05.1234") == "NixOS - Configuration 5 (2024-05-01 - 24.05.1234)");
    CHECK(entry_title(5, "fast", 1714521600, "24.05.1234") ==
          "NixOS - Configuration 5 (fast - 2024-05-01 - 24.05.1234)");
    CHECK(entry_title(7, "", 0, "") == "NixOS - Configuration 7 (1970-01-01)");
    CHECK(entry_title(7, "", 0, "a\nb\tc") == "NixOS - Configuration 7 (1970-01-01 - a b c)");
}

TEST_CASE("grubcfg: golden files for every state pass grub-script-check", "[grub][grubcfg][real]") {
    NIXBOOT_NEED_PROGRAM(grub_script_check, "grub-script-check");
    struct Case {
        std::string name;
        GrubCfgSpec spec;
    };
    std::vector<Case> cases;
    {
        GrubCfgSpec s = base_spec();
        cases.push_back({"menu.cfg", s});
    }
    {
        GrubCfgSpec s = base_spec();
        s.env = {"ESP-UUID", "/grub/grubenv", EnvWriter::grub};
        cases.push_back({"env-on-esp.cfg", s});
    }
    {
        GrubCfgSpec s = base_spec();
        s.env.writer = EnvWriter::stage1;
        cases.push_back({"env-unwritable.cfg", s});
    }
    {
        GrubCfgSpec s = base_spec();
        s.timeout = 0;
        cases.push_back({"timeout-0.cfg", s});
    }
    {
        // Strings that would break naive quoting.
        GrubCfgSpec s;
        MenuEntry e = entry(4);
        e.title = entry_title(4, "", 1714521600, "24.05'pre$(reboot)`x` \"q\" ${root} ;{}\\");
        e.kernel = "/kernels/it's a kernel";
        e.params = {"init=/nix/store/x/init",
                    "foo=\"a b\"",
                    "x='y'",
                    "$root",
                    "${prefix}",
                    "a;b",
                    "c\\",
                    "}",
                    "{",
                    "#notacomment"};
        s.entries = {e, entry(1)};
        s.default_id = "nixos-generation-1";
        cases.push_back({"hostile-strings.cfg", s});
    }
    for (const auto& c : cases) {
        INFO(c.name);
        const std::string text = format_grub_cfg(c.spec);
        auto checked = script_check(text);
        INFO(checked.output);
        CHECK(checked.status == 0);
        check_golden(c.name, text);
    }
}

TEST_CASE("grubcfg: grub-script-check does catch a broken file", "[grub][grubcfg][real]") {
    // Proves the check above can fail: an unbalanced quote, as a naive
    // generator would write for the title "it's".
    CHECK(script_check("menuentry 'it's' {\n  linux /k\n}\n").status != 0);
    CHECK(script_check("if [ a = a ]; then\n").status != 0);
}

TEST_CASE("grubcfg: every kernel line names its entry and carries the trial words", "[grub][grubcfg]") {
    GrubCfgSpec s = base_spec();
    const std::string text = format_grub_cfg(s);
    for (const auto& e : s.entries) {
        const std::string needle = "'nixboot.entry=" + e.id + "' ${nixboot_args}\n";
        CHECK(text.find(needle) != std::string::npos);
    }
    // The default first (fallback "0", and what an unknown grubenv default
    // means), then every entry in menu order, all at top level.
    auto at = text.find("\nmenuentry 'NixOS' --id 'nixos-generation-2' {");
    CHECK(at != std::string::npos);
    for (const auto& e : s.entries) {
        const auto next = text.find("\nmenuentry " + grub_quote(e.title) + " --id " + grub_quote(e.id) + " {");
        CHECK(next != std::string::npos);
        CHECK(at < next);
        at = next;
    }
    CHECK(text.find("submenu") == std::string::npos);
    CHECK(text.find("export nixboot_args\n") < text.find("\nmenuentry "));
    CHECK(text.find("set default='nixos-generation-2'\n") != std::string::npos);
}

namespace {

// An entry whose kernel parameters need GRUB's rewriting (docs/grub.md,
// "Kernel parameters"): quotes, spaces, GRUB metacharacters, and two GRUB
// cannot pass at all.
MenuEntry quoting_entry() {
    MenuEntry e = entry(4);
    e.params = {"init=/nix/store/x/init", "acpi_osi=!Linux", "acpi_osi=\"!Windows 2020\"",
                "\"dyndbg=file a.c +p\"", "memmap=128M$1G",  "a;b",
                "root=${prefix}",         "foo=say\"hi\"",   "path=C:\\boot",
                "console=ttyS0 quiet"};
    return e;
}

// The arguments bash gives `linux` for each `linux` line of `cfg`, kernel
// path first. Inside single quotes (all grub_quote writes, '\'' included)
// bash and GRUB's lexer (grub-core/script/yylex.l, SQUOTE) both take every
// byte literally, so bash stands in for GRUB script here; the VM tests run
// the same lines under real GRUB.
std::vector<std::vector<std::string>> linux_argvs(const std::string& cfg) {
    TempDir tmp;
    std::string script = "nixboot_args=\nlinux() { printf '%s\\0' \"$@\"; printf '\\n'; }\n";
    for (std::size_t p = cfg.find("  linux "); p != std::string::npos; p = cfg.find("  linux ", p + 1))
        script += cfg.substr(p, cfg.find('\n', p) - p + 1);
    spit(tmp / "linux.sh", script);
    auto r = run({"bash", (tmp / "linux.sh").string()});
    REQUIRE(r.status == 0);
    std::vector<std::vector<std::string>> out;
    std::size_t at = 0;
    for (std::size_t nl; (nl = r.output.find('\n', at)) != std::string::npos; at = nl + 1) {
        std::vector<std::string> argv;
        const std::string line = r.output.substr(at, nl - at);
        for (std::size_t b = 0, z; (z = line.find('\0', b)) != std::string::npos; b = z + 1)
            argv.push_back(line.substr(b, z - b));
        out.push_back(std::move(argv));
    }
    return out;
}

}  // namespace

TEST_CASE("grubcfg: kernel parameters are written as GRUB must pass them", "[grub][grubcfg]") {
    GrubCfgSpec s;
    s.entries = {quoting_entry()};
    s.default_id = "nixos-generation-4";
    const std::string text = format_grub_cfg(s);
    // Quotes off where GRUB puts its own back; what it cannot pass left out.
    const std::string line =
        "  linux '/kernels/hash4-linux-6.6.30-bzImage' 'init=/nix/store/x/init' 'acpi_osi=!Linux' "
        "'acpi_osi=!Windows 2020' 'dyndbg=file a.c +p' 'memmap=128M$1G' 'a;b' 'root=${prefix}' 'console=ttyS0' "
        "'quiet' 'nixboot.entry=nixos-generation-4' ${nixboot_args}\n";
    CHECK(text.find(line) != std::string::npos);
    CHECK(text.find("say") == std::string::npos);
    CHECK(text.find("C:") == std::string::npos);
}

TEST_CASE("grubcfg: the kernel reads each GRUB entry's parameters as systemd-boot's", "[grub][grubcfg][real]") {
    NIXBOOT_NEED_PROGRAM(grub_script_check, "grub-script-check");
    GrubCfgSpec s;
    s.entries = {quoting_entry(), entry(1)};
    s.default_id = "nixos-generation-1";
    const std::string text = format_grub_cfg(s);
    auto checked = script_check(text);
    INFO(checked.output);
    CHECK(checked.status == 0);
    // Entry 0 is the default's copy, then every entry in order.
    const auto argvs = linux_argvs(text);
    REQUIRE(argvs.size() == 3);
    const std::vector<const MenuEntry*> order = {&s.entries[1], &s.entries[0], &s.entries[1]};
    for (std::size_t i = 0; i < argvs.size(); ++i) {
        const MenuEntry& e = *order[i];
        REQUIRE(argvs[i].size() >= 2);
        CHECK(argvs[i][0] == e.kernel);
        // GRUB's command line (lib/cmdline.c) of the arguments after the kernel...
        std::string grub_line;
        for (std::size_t a = 1; a < argvs[i].size(); ++a)
            grub_line += (a == 1 ? "" : " ") + grub_cmdline_word(argvs[i][a]);
        // ... and systemd-boot's options line (sdboot.cpp) for the same entry,
        // without the parameters GRUB cannot pass (install names them).
        const auto unpassable = grub_linux_args(e.params).unpassable;
        std::string sd_line;
        for (const auto& p : e.params)
            if (std::none_of(unpassable.begin(), unpassable.end(), [&](const auto& u) { return u.param == p; }))
                sd_line += p + " ";
        sd_line += "nixboot.entry=" + e.id;
        INFO("GRUB:         " << grub_line << "\nsystemd-boot: " << sd_line);
        CHECK(split_linux_cmdline(grub_line) == split_linux_cmdline(sd_line));
    }
    CHECK(grub_linux_args(s.entries[0].params).unpassable.size() == 2);
}

TEST_CASE("grubcfg: the text depends on the entries, never on the trial or the current default", "[grub][grubcfg]") {
    // What makes promotion and rollback safe on FAT: they write grubenv in
    // place and never replace grub.cfg. The spec has no trial or live default.
    const std::string text = format_grub_cfg(base_spec());
    CHECK(text.find("nixos-generation-3' ]") == std::string::npos);
    CHECK(text.find("set default=\"${nixboot_default}\"") != std::string::npos);
    CHECK(text.find("set default=\"${nixboot_trial}\"") != std::string::npos);
}

TEST_CASE("grubcfg: refuses specs that would break G1 or the file", "[grub][grubcfg]") {
    GrubCfgSpec s = base_spec();
    s.default_id = "nixos-generation-9";
    CHECK_THROWS_WITH(format_grub_cfg(s), "grub.cfg: default entry 'nixos-generation-9' is not among the entries");
    s = base_spec();
    s.entries[0].params.push_back("evil\nmenuentry x {");
    CHECK_THROWS_WITH(format_grub_cfg(s),
                      "grub.cfg: entry 'nixos-generation-3': kernel parameter 'evil\nmenuentry x {' "
                      "holds a control character");
    s = base_spec();
    s.entries[1].id = "nixos-generation-3-specialisation-a'b";
    CHECK_THROWS_WITH(format_grub_cfg(s),
                      "grub.cfg: entry 'nixos-generation-3-specialisation-a'b' is not an entry ID "
                      "of [A-Za-z0-9._-]");
}

TEST_CASE("grubcfg: counting in every env state (preamble run by bash over real grubenv)", "[grub][grubcfg][real]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    GrubCfgSpec s = base_spec();
    const std::string cfg = format_grub_cfg(s);
    const std::string T = "nixos-generation-3";

    SECTION("no trial armed: the default boots, nothing is written") {
        auto o = simulate(cfg, {{"nixboot_default", "nixos-generation-2"}});
        CHECK(o.default_entry == "nixos-generation-2");
        CHECK(o.args == "");
        CHECK(o.env_after == std::map<std::string, std::string>{{"nixboot_default", "nixos-generation-2"}});
    }
    SECTION("tries N..1: each boot saves N-1 first, then boots the trial") {
        for (unsigned n : {32u, 3u, 2u, 1u}) {
            auto o = simulate(cfg, {{"nixboot_trial", T}, {"nixboot_tries", std::to_string(n)}});
            INFO("tries " << n);
            CHECK(o.default_entry == T);
            CHECK(o.env_after["nixboot_tries"] == std::to_string(n - 1));
            CHECK(o.env_after["nixboot_trial"] == T);
            CHECK(o.args == "nixboot.trial=" + T + " nixboot.tries=" + std::to_string(n - 1));
        }
    }
    SECTION("tries 0: the good default boots and the spent trial stays for userspace to mark bad") {
        auto o = simulate(cfg, {{"nixboot_trial", T}, {"nixboot_tries", "0"}});
        CHECK(o.default_entry == "nixos-generation-2");
        CHECK(o.env_after["nixboot_tries"] == "0");
        CHECK(o.args == "nixboot.trial=" + T + " nixboot.tries=0");
    }
    SECTION("garbage or out-of-range tries never boot the trial") {
        for (std::string bad : {"", "-1", "33", "1 ", "01", "x"}) {
            auto o = simulate(cfg, {{"nixboot_trial", T}, {"nixboot_tries", bad}});
            INFO("tries '" << bad << "'");
            CHECK(o.default_entry == "nixos-generation-2");
            CHECK(o.env_after["nixboot_tries"] == bad);
        }
    }
    SECTION("a trial that is no entry here boots the first entry, the file's default") {
        auto o = simulate(cfg, {{"nixboot_trial", "nixos-generation-9"}, {"nixboot_tries", "2"}});
        CHECK(o.default_entry == "nixos-generation-2");
    }
    SECTION("grubenv's default is what boots (promotion, rollback), and the trial beats it") {
        auto o = simulate(cfg, {{"nixboot_default", "nixos-generation-1"}});
        CHECK(o.default_entry == "nixos-generation-1");
        o = simulate(cfg, {{"nixboot_default", "nixos-generation-1"}, {"nixboot_trial", T}, {"nixboot_tries", "1"}});
        CHECK(o.default_entry == T);
        o = simulate(cfg, {{"nixboot_default", "nixos-generation-1"}, {"nixboot_trial", T}, {"nixboot_tries", "0"}});
        CHECK(o.default_entry == "nixos-generation-1");
        CHECK(o.args == "nixboot.trial=" + T + " nixboot.tries=0");
    }
    SECTION("a grubenv default that is no entry here falls back to the file's") {
        auto o = simulate(cfg, {{"nixboot_default", "nixos-generation-77"}});
        CHECK(o.default_entry == "nixos-generation-2");
    }
    SECTION("env not writable: the trial is not booted (its try could not be consumed)") {
        auto o = simulate(cfg, {{"nixboot_trial", T}, {"nixboot_tries", "2"}}, false);
        CHECK(o.default_entry == "nixos-generation-2");
        CHECK(o.env_after["nixboot_tries"] == "2");
        CHECK(o.output.find("nixboot: cannot save grubenv") != std::string::npos);
    }
    SECTION("a one-shot trial costs exactly one boot") {
        auto first = simulate(cfg, {{"nixboot_trial", T}, {"nixboot_tries", "1"}});
        CHECK(first.default_entry == T);
        auto second = simulate(cfg, first.env_after);
        CHECK(second.default_entry == "nixos-generation-2");
        CHECK(second.env_after == first.env_after);
    }
}

TEST_CASE("grubcfg: env on the ESP and env consumed by stage 1", "[grub][grubcfg][real]") {
    NIXBOOT_NEED_PROGRAM(grub_editenv, "grub-editenv");
    NIXBOOT_NEED_PROGRAM(grub_script_check, "grub-script-check");
    const std::string T = "nixos-generation-3";
    SECTION("ESP found by UUID: decrements there") {
        GrubCfgSpec s = base_spec();
        s.env = {"ESP-UUID", "/grub/grubenv", EnvWriter::grub};
        auto o =
            simulate(format_grub_cfg(s), {{"nixboot_trial", T}, {"nixboot_tries", "2"}}, true, "(esp)/grub/grubenv");
        CHECK(o.default_entry == T);
        CHECK(o.env_after["nixboot_tries"] == "1");
    }
    SECTION("ESP missing: no env, the default boots") {
        GrubCfgSpec s = base_spec();
        s.env = {"OTHER-UUID", "/grub/grubenv", EnvWriter::grub};
        auto o =
            simulate(format_grub_cfg(s), {{"nixboot_trial", T}, {"nixboot_tries", "2"}}, true, "(esp)/grub/grubenv");
        CHECK(o.default_entry == "nixos-generation-2");
    }
    SECTION("stage1 consumes: GRUB only reads, passes the decrement on the command line") {
        GrubCfgSpec s = base_spec();
        s.env.writer = EnvWriter::stage1;
        const std::string cfg = format_grub_cfg(s);
        CHECK(cfg.find("save_env") == std::string::npos);
        auto o = simulate(cfg, {{"nixboot_trial", T}, {"nixboot_tries", "2"}}, false);
        CHECK(o.default_entry == T);
        CHECK(o.env_after["nixboot_tries"] == "2");
        CHECK(o.args == "nixboot.trial=" + T + " nixboot.tries=1 nixboot.consume=stage1");
        auto spent = simulate(cfg, {{"nixboot_trial", T}, {"nixboot_tries", "0"}}, false);
        CHECK(spent.default_entry == "nixos-generation-2");
    }
}

TEST_CASE("grubcfg: 1000 generations, size and time", "[grub][grubcfg][bench]") {
    NIXBOOT_NEED_PROGRAM(grub_script_check, "grub-script-check");
    GrubCfgSpec s;
    for (unsigned g = 1000; g >= 1; --g) {
        s.entries.push_back(entry(g));
        if (g % 10 == 0) s.entries.push_back(entry(g, "fast"));
    }
    s.default_id = "nixos-generation-999";
    const auto t0 = std::chrono::steady_clock::now();
    const std::string text = format_grub_cfg(s);
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    WARN("grub.cfg for 1000 generations + 100 specialisations: " << text.size() << " bytes in " << ms << " ms");
    CHECK(text.size() < 1024 * 1024);
    CHECK(script_check(text).status == 0);
}
