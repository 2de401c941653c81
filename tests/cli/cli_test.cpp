// The real `nixboot` binary: exit codes 0/1/2, one-line errors, nothing
// written on bad usage, --help everywhere, nixboot-try, JSON output.
#include "tests/cli/rig.hpp"

#include "tests/catch.hpp"

#include <nlohmann/json.hpp>

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace nixboot;
using nixboot::test::Rig;
using nixboot::test::run_program;

namespace {

std::vector<std::string> cmd(const Rig& rig, std::vector<std::string> rest, const char* bin = NIXBOOT_BIN) {
    std::vector<std::string> argv{bin,
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

Rig& with_config(Rig& rig, const std::string& text = "") {
    test::write_file(rig.tmp / "nixboot.conf", text);
    return rig;
}

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

}  // namespace

TEST_CASE("cli: install, try, status, list, history through the binary") {
    Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
    with_config(rig, "# test\ntries = 2\n");
    auto r = run_program(cmd(rig, {"install"}));
    CHECK(r.status == 0);
    CHECK(r.out == "adopted nixos-generation-2 as good\n2 added, 0 updated, 0 removed; default nixos-generation-2\n");
    CHECK(rig.entries() == std::vector<std::string>{"nixos-generation-1+2-0.conf", "nixos-generation-2.conf",
                                                    "nixos-generation-3+2-0.conf"});

    r = run_program(cmd(rig, {"try", "3", "--tries", "1"}));
    CHECK(r.status == 0);
    CHECK(
        r.out ==
        "armed nixos-generation-3 as a one-shot trial (1 try); it falls back to nixos-generation-2\nreboot to start the trial\n");
    CHECK(rig.var(efivar_name::loader_entry_oneshot) == std::optional<std::string>("nixos-generation-3[+.]*conf"));

    r = run_program(cmd(rig, {"status"}));
    CHECK(r.status == 0);
    CHECK(r.out.find("default:     nixos-generation-2 (good)\n") != std::string::npos);
    CHECK(r.out.find("next boot:   nixos-generation-3 (trial, 1 left)\n") != std::string::npos);
    CHECK(r.out.find("trial:       nixos-generation-3 (trial, 1 left) armed as a one-shot\n") != std::string::npos);

    auto js = run_program(cmd(rig, {"--json", "status"}));
    REQUIRE(js.status == 0);
    auto j = nlohmann::json::parse(js.out);
    CHECK(j["default"] == "nixos-generation-2");
    CHECK(j["armed"] == "nixos-generation-3");
    CHECK(j["armed_mode"] == "one-shot");
    CHECK(j["entries"].size() == 3);

    js = run_program(cmd(rig, {"--json", "list"}));
    REQUIRE(js.status == 0);
    j = nlohmann::json::parse(js.out);
    REQUIRE(j.size() == 3);
    CHECK(j[0]["id"] == "nixos-generation-3");
    CHECK(j[0]["state"] == "trial");
    CHECK(j[0]["armed"] == true);
    CHECK(j[1]["default"] == true);

    r = run_program(cmd(rig, {"list"}));
    CHECK(r.out.rfind("GEN    STATE    TRIES   ENTRY", 0) == 0);

    rig.boot();
    r = run_program(cmd(rig, {"status"}));
    CHECK(
        r.out.find(
            "booted:      nixos-generation-3 (bad)  [loader/entries/nixos-generation-3+0-1.conf]  trial boot, verdict pending\n") !=
        std::string::npos);
    r = run_program(cmd(rig, {"mark-good"}));
    CHECK(r.status == 0);
    CHECK(r.out == "nixos-generation-3 is good and the default\n");
    CHECK(rig.pinned_good_default() == "nixos-generation-3");

    js = run_program(cmd(rig, {"--json", "history"}));
    REQUIRE(js.status == 0);
    j = nlohmann::json::parse(js.out);
    std::vector<std::string> ev;
    for (const auto& rec : j) ev.push_back(rec["event"]);
    CHECK(ev == std::vector<std::string>{"adopt", "install", "arm", "good", "promote"});

    r = run_program(cmd(rig, {"rollback"}));
    CHECK(r.status == 0);
    CHECK(r.out == "default is now nixos-generation-2\n");
}

TEST_CASE("cli: bad usage exits 2 with one line and writes nothing") {
    Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
    with_config(rig);
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    auto before = rig.snapshot();
    struct Case {
        std::vector<std::string> args;
        std::string err;
    };
    std::vector<Case> cases{
        {{"frobnicate"}, "nixboot: unknown verb 'frobnicate' (see 'nixboot --help')\n"},
        {{}, "nixboot: no verb given (see 'nixboot --help')\n"},
        {{"try"}, "nixboot: try: missing GEN (see 'nixboot try --help')\n"},
        {{"try", "x"}, "nixboot: try: GEN: 'x' is not a generation number\n"},
        {{"try", "3", "--tries", "0"}, "nixboot: --tries: tries: must be at least 1\n"},
        {{"try", "3", "--bogus"}, "nixboot: try: unrecognised option '--bogus'\n"},
        {{"try", "3", "--confirm-timeout", "5"}, "nixboot: try: --confirm-timeout needs --live or --reboot\n"},
        {{"--bootloader", "lilo", "status"}, "nixboot: --bootloader: bootloader: 'lilo' is not systemd-boot or grub\n"},
        {{"install", "--keep", "many"}, "nixboot: --keep: keep: 'many' is not a number\n"},
        {{"mark-good", "abc"}, "nixboot: GEN: 'abc' is not a generation number\n"},
    };
    for (const auto& c : cases) {
        INFO(c.err);
        auto r = run_program(cmd(rig, c.args));
        CHECK(r.status == 2);
        CHECK(r.err == c.err);
        CHECK(r.out.empty());
    }
    with_config(rig, "esp = /boot\nfrobnicate = 1\n");
    auto r = run_program(cmd(rig, {"install"}));
    CHECK(r.status == 2);
    CHECK(r.err == "nixboot: " + (rig.tmp / "nixboot.conf").string() + ":2: unknown key 'frobnicate'\n");
    std::filesystem::remove(rig.tmp / "nixboot.conf");
    r = run_program(cmd(rig, {"status"}));
    CHECK(r.status == 2);
    CHECK(r.err == "nixboot: config file '" + (rig.tmp / "nixboot.conf").string() + "': No such file or directory\n");
    CHECK(rig.snapshot() == before);
}

TEST_CASE("cli: a usage error on a fresh machine creates no state directory") {
    Rig rig(2);
    with_config(rig);
    auto r = run_program(cmd(rig, {"try", "2", "--tries", "x"}));
    CHECK(r.status == 2);
    CHECK_FALSE(std::filesystem::exists(rig.state));
    CHECK(rig.entries().empty());
}

TEST_CASE("cli: failures exit 1 with one line naming the cause") {
    Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
    with_config(rig);
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    auto before = rig.snapshot();
    auto r = run_program(cmd(rig, {"try", "9"}));
    CHECK(r.status == 1);
    CHECK(r.err == "nixboot: unknown generation 9 (no " + (rig.tmp / "profiles/system-9-link").string() + ")\n");
    r = run_program(cmd(rig, {"try", "2"}));
    CHECK(r.status == 1);
    CHECK(r.err ==
          "nixboot: generation 2 is already the default (loader/entries/nixos-generation-2.conf); nothing to try\n");
    r = run_program(cmd(rig, {"mark-good"}));
    CHECK(r.status == 1);
    CHECK(r.err == "nixboot: mark-good: no GEN given and the loader did not say which entry booted\n");
    CHECK(one_line(r.err));
    CHECK(rig.snapshot() == before);
}

TEST_CASE("cli: nixboot-try is nixboot try") {
    Rig rig(3, "systemd-boot 258", 2);
    with_config(rig);
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    auto try_bin = std::filesystem::path(NIXBOOT_BIN).parent_path() / "nixboot-try";
    REQUIRE(std::filesystem::is_symlink(try_bin));
    auto r = run_program(cmd(rig, {"3", "--tries", "1"}, try_bin.c_str()));
    CHECK(r.status == 0);
    CHECK(rig.var(efivar_name::loader_entry_oneshot) == std::optional<std::string>("nixos-generation-3[+.]*conf"));
    CHECK(rig.entries()[2] == "nixos-generation-3+1-0.conf");
    r = run_program({try_bin.string(), "--help"});
    CHECK(r.status == 0);
    CHECK(r.out.rfind("Usage: nixboot [GLOBAL OPTIONS] try GEN", 0) == 0);
}

TEST_CASE("cli: try --reboot runs the reboot command after arming") {
    Rig rig(3, "systemd-boot 252.39", 2);
    with_config(rig);
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    auto r = run_program(cmd(rig, {"try", "3", "--reboot"}), {"NIXBOOT_REBOOT_COMMAND=/bin/false"});
    CHECK(r.status == 1);
    CHECK(r.err == "nixboot: the trial is armed, but '/bin/false' failed (exit status 1); reboot to start it\n");
    CHECK(rig.var(efivar_name::loader_entry_oneshot) == std::optional<std::string>("nixos-generation-3[+.]*conf"));
    r = run_program(cmd(rig, {"try", "3", "--reboot"}), {"NIXBOOT_REBOOT_COMMAND=/bin/true"});
    CHECK(r.status == 0);
}

TEST_CASE("cli: every verb has --help, the top-level help lists them, man page built") {
    auto r = run_program({NIXBOOT_BIN, "--help"});
    REQUIRE(r.status == 0);
    for (const char* verb : {"install", "try", "status", "list", "history", "mark-good", "mark-bad", "rollback"}) {
        INFO(verb);
        CHECK(r.out.find(std::string("\n  ") + verb) != std::string::npos);
        auto h = run_program({NIXBOOT_BIN, verb, "--help"});
        CHECK(h.status == 0);
        CHECK(h.out.rfind(std::string("Usage: nixboot [GLOBAL OPTIONS] ") + verb, 0) == 0);
    }
    CHECK(run_program({NIXBOOT_BIN, "--version"}).out == "nixboot 0.1.0\n");
    auto man = std::filesystem::path(NIXBOOT_BINARY_DIR) / "cli/nixboot.8";
    REQUIRE(std::filesystem::exists(man));
    auto text = test::read_file(man);
    CHECK(text.find("mark\\-good") != std::string::npos);
    auto completion = std::filesystem::path(NIXBOOT_SOURCE_DIR) / "cli/completion/nixboot.bash";
    auto c = run_program({"/bin/bash", "-n", completion.string()});
    CHECK(c.status == 0);
}

TEST_CASE("cli: the config file supplies defaults, the command line wins") {
    Rig rig(3, "systemd-boot 252.39", 2);
    with_config(rig, "esp = /nonexistent\ntries = 3\n");
    auto r = run_program(cmd(rig, {"install"}));  // --esp on the command line wins over esp =
    CHECK(r.status == 0);
    CHECK(rig.entries()[2] == "nixos-generation-3+3-0.conf");
}

TEST_CASE("cli: install --install-bootloader runs grub-install first, and only when asked") {
    Rig rig(2, "", 2);
    auto log = rig.tmp / "grub-install.log";
    auto fake = rig.tmp / "fake-grub-install";
    test::write_file(fake, "#!/bin/sh\necho \"$@\" >> '" + log.string() + "'\n");
    std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
    with_config(
        rig,
        "bootloader = grub\ngrub-probe-boot = fs=ext2\ngrub-device-path = /\ngrub-target = i386-pc\ngrub-device = /dev/vdz\n"
        "grub-install = " +
            fake.string() + "\n");
    auto first = run_program(cmd(rig, {"install"}));
    INFO(first.err);
    REQUIRE(first.status == 0);
    CHECK_FALSE(std::filesystem::exists(log));  // entries only, unless asked
    auto r = run_program(cmd(rig, {"install", "--install-bootloader"}));
    CHECK(r.status == 0);
    CHECK(test::read_file(log) == "--target=i386-pc --boot-directory=" + rig.esp.string() + " /dev/vdz\n");

    // A failing grub-install is one line, exit 1.
    test::write_file(fake, "#!/bin/sh\necho 'grub-install: error: disk not found' >&2\nexit 1\n");
    r = run_program(cmd(rig, {"install", "--install-bootloader"}));
    CHECK(r.status == 1);
    CHECK(r.err == "nixboot: " + fake.string() + " failed (exit 1): grub-install: error: disk not found\n");
}

namespace {

// Runs `argv` as uid/gid 65534 (nobody) when the test runs as root, else as
// the caller; stdout and stderr through pipes. The environment is the
// caller's plus `env`.
nixboot::test::RunResult run_unprivileged(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
    if (::geteuid() != 0) return run_program(argv, env);
    int out[2], err[2];
    REQUIRE(::pipe(out) == 0);
    REQUIRE(::pipe(err) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
        if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(126);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    auto drain = [](int fd) {
        std::string text;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
        ::close(fd);
        return text;
    };
    nixboot::test::RunResult r;
    r.out = drain(out[0]);
    r.err = drain(err[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

}  // namespace

TEST_CASE("cli: a mutating verb run unprivileged where it cannot write refuses before any change") {
    Rig rig(3, "systemd-boot 252.39-1~deb12u1", 2);
    with_config(rig);
    REQUIRE(run_program(cmd(rig, {"install"})).status == 0);
    // As root the rig's directories (0700, root's) are closed to nobody; as
    // another user the ESP is made read-only.
    if (::geteuid() != 0)
        std::filesystem::permissions(rig.esp, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    auto before = rig.snapshot();
    unsigned uid = ::geteuid() == 0 ? 65534 : ::geteuid();
    std::vector<std::string> globals{NIXBOOT_BIN,          "--esp",     rig.esp.string(),     "--profile",
                                     rig.profile.string(), "--efivars", rig.efivars.string(), "--state",
                                     rig.state.string()};
    const std::vector<std::vector<std::string>> verbs{{"install"},  {"try", "3"}, {"mark-good", "3"}, {"mark-bad", "3"},
                                                      {"rollback"}, {"check"},    {"confirm"},        {"live-revert"}};
    for (const auto& v : verbs) {
        auto argv = globals;
        argv.insert(argv.end(), v.begin(), v.end());
        auto r = run_unprivileged(argv, {"NIXBOOT_CONFIG=/nonexistent/nixboot.conf"});
        CHECK(r.status == 1);
        CHECK(r.err == "nixboot: " + v.front() + ": must be run as root: '" + rig.esp.string() +
                           "' is not writable by uid " + std::to_string(uid) + "; nothing changed\n");
    }
    std::filesystem::permissions(rig.esp, std::filesystem::perms::owner_all);
    CHECK(rig.snapshot() == before);
}
