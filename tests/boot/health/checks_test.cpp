// The checks runner against real executables in a temporary checks directory.
#include "boot/health/checks.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/health/health_support.hpp"

#include "tests/catch.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fstream>
#include <mutex>
#include <thread>
#include <unistd.h>

using namespace nixboot;
using namespace nixboot::health;
using namespace nixboot::test;
using namespace std::chrono_literals;

namespace {

struct Checks {
    TempDir tmp;
    std::filesystem::path dir = tmp / "checks.d";
    Checks() {
        std::filesystem::create_directories(dir / "required");
        std::filesystem::create_directories(dir / "wanted");
        ::chmod(tmp.path().c_str(), 0755);
    }
    void add(const std::string& rel, const std::string& body, mode_t mode = 0755) {
        write_script(dir / rel, "#!/bin/sh\n" + body + "\n", mode);
    }
    CheckDiscovery discover(CheckSettings s = {}) { return discover_checks(dir, s); }
};

// Gone or a zombie (an orphan's reaper may be slow): not running any more.
bool running(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(stat, text)) return false;
    auto paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
}

struct Collect {
    std::mutex m;
    std::vector<std::string> lines;
    OutputSink sink() {
        return [this](std::string_view l) {
            std::lock_guard g(m);
            lines.emplace_back(l);
        };
    }
};

}  // namespace

TEST_CASE("checks: discovery sorts required first and reads per-check timeouts", "[health][checks]") {
    Checks c;
    c.add("wanted/ntp", "exit 0");
    c.add("required/zz", "exit 0");
    c.add("required/aa", "exit 0");
    c.add("required/.hidden", "exit 0");
    CheckSettings s;
    s.default_timeout = 7s;
    s.sections["aa"]["timeout"] = "3";
    auto d = c.discover(s);
    REQUIRE(d.checks.size() == 3);
    CHECK(d.checks[0].name == "aa");
    CHECK(d.checks[0].timeout == 3s);
    CHECK(d.checks[1].name == "zz");
    CHECK(d.checks[1].timeout == 7s);
    CHECK(d.checks[2].name == "ntp");
    CHECK(d.checks[2].kind == CheckKind::wanted);
    CHECK(d.refused.empty());
    s.sections["aa"]["timeout"] = "soon";
    CHECK_THROWS_WITH(c.discover(s), "[check.aa] timeout: 'soon' is not a number of seconds from 1 to 86400");
}

TEST_CASE("checks: unsafe or unusable files are refused with the reason", "[health][checks][bad-input]") {
    Checks c;
    c.add("required/world-writable", "exit 0", 0777);
    c.add("required/group-writable", "exit 0", 0775);
    c.add("required/not-executable", "exit 0", 0644);
    std::filesystem::create_directories(c.dir / "required/a-directory");
    ::chmod((c.dir / "required/a-directory").c_str(), 0755);
    std::filesystem::create_symlink("/nonexistent/check", c.dir / "wanted/dangling");
    std::filesystem::create_symlink("/bin/true", c.dir / "wanted/link-to-true");
    auto d = c.discover();
    REQUIRE(d.checks.size() == 1);
    CHECK(d.checks[0].name == "link-to-true");
    std::map<std::string, std::string> why;
    for (const auto& r : d.refused) why[r.name] = r.reason;
    CHECK(why["world-writable"] == "writable by group or others (mode 0777)");
    CHECK(why["group-writable"] == "writable by group or others (mode 0775)");
    CHECK(why["not-executable"] == "not executable (mode 0644)");
    CHECK(why["a-directory"] == "not a regular file");
    CHECK(why["dangling"] == "No such file or directory");
}

TEST_CASE("checks: a file directly in the checks directory is named as ignored, with where it goes",
          "[health][checks][bad-input]") {
    Checks c;
    c.add("required/ok", "exit 0");
    c.add("my-check", "exit 1");
    auto d = c.discover();
    REQUIRE(d.checks.size() == 1);
    CHECK(d.refused.empty());
    REQUIRE(d.ignored.size() == 1);
    CHECK(d.ignored[0] == "'" + (c.dir / "my-check").string() + "' is ignored: a check goes in '" +
                              (c.dir / "required").string() + "/' (the trial fails without it) or '" +
                              (c.dir / "wanted").string() + "/' (reported only)");
}

TEST_CASE("checks: a check owned by another user is refused", "[health][checks][bad-input]") {
    NIXBOOT_SKIP_UNLESS_ROOT("giving a file to another user (chown)");
    Checks c;
    c.add("required/not-root", "exit 0", 0755);
    REQUIRE(::chown((c.dir / "required/not-root").c_str(), 1000, 1000) == 0);
    auto d = c.discover();
    CHECK(d.checks.empty());
    REQUIRE(d.refused.size() == 1);
    CHECK(d.refused[0].reason == "owned by uid 1000, not root");
}

TEST_CASE("checks: a checks directory writable by others refuses everything in it", "[health][checks][bad-input]") {
    Checks c;
    c.add("required/ok", "exit 0");
    ::chmod((c.dir / "required").c_str(), 0777);
    auto d = c.discover();
    CHECK(d.checks.empty());
    REQUIRE(d.refused.size() == 1);
    CHECK(d.refused[0].reason ==
          "directory '" + (c.dir / "required").string() + "' is writable by group or others (mode 0777)");
}

TEST_CASE("checks: a missing checks directory is an error naming it", "[health][checks][bad-input]") {
    TempDir tmp;
    CHECK_THROWS_WITH(discover_checks(tmp / "nope", {}),
                      "checks directory '" + (tmp / "nope").string() + "': No such file or directory");
    write_file(tmp / "file", "");
    CHECK_THROWS_WITH(discover_checks(tmp / "file", {}),
                      "checks directory '" + (tmp / "file").string() + "': not a directory");
}

TEST_CASE("checks: run in parallel, output prefixed, outcomes", "[health][checks]") {
    Checks c;
    // A rendezvous, not a stopwatch: each of the two waits (bounded) for the
    // other to have started, which only happens when they run in parallel.
    const std::string meet = c.tmp.path().string();
    auto rendezvous = [&](const std::string& me, const std::string& other) {
        return "touch '" + meet + "/" + me + "'; i=0; while [ ! -e '" + meet + "/" + other +
               "' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; [ -e '" + meet + "/" + other +
               "' ] || { echo not-parallel; exit 9; }; ";
    };
    c.add("required/pass", rendezvous("pass.started", "fail.started") + "echo hello; echo to-stderr >&2; exit 0");
    c.add("required/fail", rendezvous("fail.started", "pass.started") + "echo broken; exit 3");
    c.add("wanted/signal", "sleep 0.5; kill -TERM $$");
    c.add("wanted/no-newline", "printf 'partial'");
    auto d = c.discover();
    Collect out;
    auto results = run_checks(d.checks, out.sink());
    REQUIRE(results.size() == 4);
    CHECK(results[0].name == "fail");
    CHECK(results[0].outcome == CheckOutcome::failed);
    CHECK(results[0].exit_code == 3);
    CHECK(describe(results[0]) == "fail (required): failed (exit status 3)");
    CHECK(results[1].name == "pass");
    CHECK(results[1].outcome == CheckOutcome::passed);
    CHECK(results[2].name == "no-newline");
    CHECK(results[2].outcome == CheckOutcome::passed);
    CHECK(results[3].outcome == CheckOutcome::failed);
    CHECK(results[3].signal == SIGTERM);
    CHECK(results[3].detail == "killed by signal Terminated");
    std::sort(out.lines.begin(), out.lines.end());
    CHECK(out.lines ==
          std::vector<std::string>{"fail: broken", "no-newline: partial", "pass: hello", "pass: to-stderr"});
}

TEST_CASE("checks: a check past its timeout has its whole process group killed", "[health][checks]") {
    Checks c;
    auto pidfile = c.tmp / "child.pid";
    c.add("required/hang", "sleep 60 & echo $! > '" + pidfile.string() + "'; sleep 60");
    CheckSettings s;
    s.sections["hang"]["timeout"] = "1";
    auto d = c.discover(s);
    auto t0 = std::chrono::steady_clock::now();
    auto results = run_checks(d.checks, nullptr);
    auto elapsed = std::chrono::steady_clock::now() - t0;
    CHECK(elapsed < 30s);  // killed, not left to finish its 60 s
    CHECK(results[0].outcome == CheckOutcome::timed_out);
    CHECK(describe(results[0]) == "hang (required): timed out (killed after the 1 s timeout)");
    pid_t child = std::stoi(read_file(pidfile));
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(running(child));  // the background sleep went with its group
}

TEST_CASE("checks: a passing check's leftover children are killed too", "[health][checks]") {
    Checks c;
    auto pidfile = c.tmp / "child.pid";
    c.add("required/leaves-child", "sleep 60 & echo $! > '" + pidfile.string() + "'; exit 0");
    auto t0 = std::chrono::steady_clock::now();
    auto results = run_checks(c.discover().checks, nullptr);
    CHECK(std::chrono::steady_clock::now() - t0 < 30s);  // its child did not keep it waiting 60 s
    CHECK(results[0].outcome == CheckOutcome::passed);
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(running(std::stoi(read_file(pidfile))));
}

TEST_CASE("checks: runs without a shell in between, stdin is /dev/null", "[health][checks]") {
    Checks c;
    // A file name with shell metacharacters runs as itself.
    c.add("required/a;b $(x)", "read line && echo got-input; echo argv0=$0");
    Collect out;
    auto results = run_checks(c.discover().checks, out.sink());
    CHECK(results[0].outcome == CheckOutcome::passed);
    REQUIRE(out.lines.size() == 1);
    CHECK(out.lines[0] == "a;b $(x): argv0=" + (c.dir / "required/a;b $(x)").string());
}

// ---- the built-in checks (cli/checks/) and `nixboot checks` -----------------

namespace {
const std::filesystem::path builtins = std::filesystem::path(NIXBOOT_SOURCE_DIR) / "cli/checks";
}

TEST_CASE("built-in checks: readable scripts, each described, executable", "[health][checks][builtin]") {
    for (const char* name : {"failed-units", "unit-active", "tcp-port", "host-reachable", "default-route"}) {
        auto path = builtins / name;
        INFO(name);
        REQUIRE(std::filesystem::exists(path));
        CHECK(read_file(path).starts_with("#!/bin/sh\n# nixboot-check: "));
        CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::owner_exec) !=
              std::filesystem::perms::none);
        CHECK(run_program({"/bin/sh", "-n", path.string()}).status == 0);
    }
}

TEST_CASE("built-in tcp-port and host-reachable against a real listener", "[health][checks][builtin]") {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(s >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(s, 4) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    std::string port = std::to_string(ntohs(addr.sin_port));
    auto listening = run_program({(builtins / "tcp-port").string(), port});
    CHECK(listening.status == 0);
    CHECK(listening.out == "port " + port + " is listening\n");
    auto reach = run_program({(builtins / "host-reachable").string(), "127.0.0.1", port});
    CHECK(reach.status == 0);
    CHECK(reach.out == "127.0.0.1:" + port + " accepts TCP connections\n");
    ::close(s);
    auto closed = run_program({(builtins / "tcp-port").string(), port});
    CHECK(closed.status == 1);
    CHECK(closed.out == "nothing listens on TCP port " + port + "\n");
    CHECK(run_program({(builtins / "host-reachable").string(), "127.0.0.1", port}).status == 1);
    auto bad = run_program({(builtins / "tcp-port").string(), "22;reboot"});
    CHECK(bad.status == 2);
    CHECK(bad.out == "'22;reboot' is not a port number\n");
}

TEST_CASE("built-in default-route agrees with the kernel's routing table", "[health][checks][builtin]") {
    auto route = read_file("/proc/net/route");
    bool has_default = route.find("\t00000000\t") != std::string::npos;
    auto r = run_program({(builtins / "default-route").string()});
    if (has_default) {
        CHECK(r.status == 0);
        CHECK(r.out == "IPv4 default route present\n");
    } else {
        CHECK(r.out != "IPv4 default route present\n");
    }
}

TEST_CASE("nixboot checks: lists built-ins and configured checks with refusals", "[health][checks][cli]") {
    Checks c;
    c.add("required/ssh", "exit 0");
    c.add("wanted/open", "exit 0", 0777);
    write_file(c.tmp / "nixboot.conf", "checks-dir = " + c.dir.string() + "\n[check.ssh]\ntimeout = 5\n");
    auto r = run_program(
        {NIXBOOT_BIN, "--config", (c.tmp / "nixboot.conf").string(), "checks", "--builtin-dir", builtins.string()});
    CHECK(r.status == 1);  // a refused check is worth a non-zero status
    CHECK(r.out.find("  tcp-port - something listens on the TCP port(s)\n") != std::string::npos);
    CHECK(r.out.find("  failed-units - no failed systemd units (arguments: unit names allowed to fail)\n") !=
          std::string::npos);
    CHECK(r.out.find("configured checks (" + c.dir.string() +
                     "):\n  required/ssh timeout 5 s\n"
                     "  wanted/open REFUSED: writable by group or others (mode 0777)\n") != std::string::npos);
    std::filesystem::remove_all(c.dir);
    auto missing = run_program({NIXBOOT_BIN, "--config", (c.tmp / "nixboot.conf").string(), "checks"});
    CHECK(missing.status == 1);
    CHECK(missing.err.find("checks directory '" + c.dir.string() + "': No such file or directory") !=
          std::string::npos);
}
