// The deployer's state machine (deploy_target) against a scripted target: a
// Transport that answers each `nixboot ARGS...` the way a target would at
// that point of its trial, or as a broken one does (no connection, a step
// that times out, garbage where the status JSON belongs, a confirm that
// arrives after the window closed). The end-to-end tests against a real sshd
// are in deploy_test.cpp; these cover what a real target cannot be made to do
// on cue.
#include "boot/deploy/deploy.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include <sys/stat.h>

#include <mutex>

using namespace nixboot;
using namespace nixboot::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

const std::string trial_id = "0123456789abcdef0123456789abcdef";

struct Entry {
    unsigned generation;
    std::string state;  // "good", "bad", "trial"
};

// `nixboot --json status` as cli/verbs/status.cpp prints it (the fields the
// deployer reads).
std::string status_json(unsigned default_generation, const std::vector<Entry>& entries, bool trial = false,
                        bool awaiting = false, std::optional<std::pair<unsigned, std::string>> rolled_back = {}) {
    std::string out = R"({"default":"nixos-generation-)" + std::to_string(default_generation) + R"(","entries":[)";
    for (std::size_t i = 0; i < entries.size(); ++i)
        out += std::string(i ? "," : "") + R"({"id":"nixos-generation-)" + std::to_string(entries[i].generation) +
               R"(","generation":)" + std::to_string(entries[i].generation) + R"(,"specialisation":null,"state":")" +
               entries[i].state + R"("})";
    out += R"(],"live_trial":)";
    out += trial ? R"({"id":")" + trial_id + R"(","generation":3,"kind":"reboot","status":"running",)" +
                       R"("awaiting_confirm":)" + (awaiting ? "true" : "false") + R"(,"confirm_timeout":60})"
                 : "null";
    out += R"(,"rolled_back":)";
    out += rolled_back ? R"({"generation":)" + std::to_string(rolled_back->first) + R"(,"reason":")" +
                             rolled_back->second + R"(","summary":"x"})"
                       : "null";
    return out + "}";
}

// What a target says before the deploy (2 good and the default, 3 installed
// and untried), while its trial boot waits, after a promotion, after a rollback.
const std::string before = status_json(2, {{3, "trial"}, {2, "good"}, {1, "good"}});
const std::string waiting = status_json(2, {{3, "trial"}, {2, "good"}, {1, "good"}}, true, true);
const std::string checking = status_json(2, {{3, "trial"}, {2, "good"}, {1, "good"}}, true, false);
const std::string promoted = status_json(3, {{3, "good"}, {2, "good"}, {1, "good"}});
std::string rolled_back(const std::string& reason) {
    return status_json(2, {{3, "bad"}, {2, "good"}, {1, "good"}}, false, false, std::make_pair(3u, reason));
}

deploy::RemoteResult answer(std::vector<std::string> lines, int status = 0) {
    deploy::RemoteResult r;
    r.exit_status = status;
    r.lines = std::move(lines);
    if (status != 0) r.detail = r.lines.empty() ? "exit status " + std::to_string(status) : r.lines.back();
    return r;
}
deploy::RemoteResult refused() { return answer({"ssh: connect to host web1 port 22: Connection refused"}, 255); }
deploy::RemoteResult timed_out() {
    deploy::RemoteResult r;
    r.timed_out = true;
    r.detail = "timed out after 7 s";
    return r;
}

// The scripted target: `status` answers the n-th status call (from 0);
// every call is recorded as "ARGS..." joined by spaces.
struct FakeTarget {
    std::function<deploy::RemoteResult(unsigned n)> status;
    std::function<deploy::RemoteResult()> confirm = [] { return answer({}); };
    deploy::RemoteResult arm = answer({R"({"entry":"nixos-generation-3","trial_id":")" + trial_id + R"("})"});
    std::vector<std::string> calls;
    std::vector<milliseconds> timeouts;
    unsigned status_calls = 0;
    bool confirmed = false, reverted = false;

    deploy::Transport transport() {
        return [this](const std::string& host, const std::vector<std::string>& args, milliseconds timeout) {
            CHECK(host == "web1");
            std::string call;
            for (const auto& a : args) call += (call.empty() ? "" : " ") + a;
            calls.push_back(call);
            timeouts.push_back(timeout);
            if (call == "--json status") return status(status_calls++);
            if (call.starts_with("--json try ")) return arm;
            if (call.starts_with("confirm ")) {
                confirmed = true;
                return confirm();
            }
            if (call.starts_with("live-revert ")) {
                reverted = true;
                return answer({});
            }
            FAIL("the deployer ran an unexpected command: " << call);
            return answer({}, 1);
        };
    }
    bool called(const std::string& prefix) const {
        return std::any_of(calls.begin(), calls.end(), [&](const auto& c) { return c.starts_with(prefix); });
    }
};

deploy::DeployOptions options() {
    deploy::DeployOptions o;
    o.hosts = {"web1"};
    o.confirm_timeout = 60;
    o.boot_timeout = 2;
    o.settle_timeout = 2;
    o.command_timeout = 7;
    o.poll_interval = milliseconds(10);
    return o;
}

struct Run {
    deploy::TargetReport report;
    std::vector<std::string> progress;
    bool said(const std::string& part) const {
        return std::any_of(progress.begin(), progress.end(),
                           [&](const auto& l) { return l.find(part) != std::string::npos; });
    }
};

Run run(FakeTarget& target, const deploy::DeployOptions& o = options(),
        const std::vector<health::CheckSpec>& checks = {}) {
    Run r;
    std::mutex m;
    r.report = deploy::deploy_target(
        o, checks, "web1",
        [&](const std::string& host, const std::string& line) {
            std::lock_guard g(m);
            CHECK(host == "web1");
            r.progress.push_back(line);
        },
        target.transport());
    INFO("report: " << deploy::report_line(r.report));
    return r;
}

std::vector<health::CheckSpec> check(const TempDir& tmp, const std::string& name, const std::string& body,
                                     unsigned timeout = 60) {
    write_file(tmp / name, "#!/bin/sh\n" + body + "\n");
    ::chmod((tmp / name).c_str(), 0755);
    return deploy::resolve_checks({(tmp / name).string()}, timeout);
}

}  // namespace

TEST_CASE("deploy state: the trial reboots (no answer), waits, is confirmed and promoted", "[deploy]") {
    FakeTarget t;
    t.status = [&](unsigned n) {
        if (n == 0) return answer({before});
        if (t.confirmed) return answer({promoted});
        if (n < 4) return refused();  // rebooting
        return answer({"nixboot: a warning on stderr", waiting});
    };
    auto r = run(t);
    CHECK(r.report.outcome == deploy::Outcome::promoted);
    CHECK(deploy::report_line(r.report) == "web1: generation 3 promoted");
    CHECK(r.report.generation == 3u);
    CHECK(r.report.previous == 2u);  // the default before the deploy, also after the promotion
    CHECK(r.report.trial_id == trial_id);
    CHECK(t.calls[1] == "--json try 3 --reboot --confirm-timeout 60");
    CHECK(std::count(t.calls.begin(), t.calls.end(), "confirm " + trial_id) == 1);
    CHECK_FALSE(t.reverted);
    // Every step is bounded by the command timeout.
    CHECK(std::all_of(t.timeouts.begin(), t.timeouts.end(), [](auto d) { return d == seconds(7); }));
    CHECK(
        r.said("waiting for the trial to pass its checks (no answer: ssh: connect to host web1 port 22: "
               "Connection refused)"));
}

TEST_CASE("deploy state: a target that reboots twice and comes back on the old generation is reported rolled back",
          "[deploy]") {
    FakeTarget t;
    const std::string reason = "trial boot of generation 3: the watchdog reset the machine";
    t.status = [&](unsigned n) {
        switch (n) {
            case 0: return answer({before});
            case 1: return refused();           // the first reboot, into the trial
            case 2: return answer({checking});  // the trial boot, its checks running
            case 3: return timed_out();         // it hangs; the watchdog resets it
            case 4: return refused();           // the second reboot, the loader falls back
            default: return answer({rolled_back(reason)});
        }
    };
    auto r = run(t);
    CHECK(r.report.outcome == deploy::Outcome::rolled_back);
    CHECK(deploy::report_line(r.report) == "web1: rolled back to 2: " + reason);
    CHECK_FALSE(t.confirmed);
    CHECK_FALSE(t.reverted);  // the target decided; the deployer only reports
}

TEST_CASE("deploy state: the trial ID is read from the status when 'try' lost its connection to the reboot",
          "[deploy]") {
    FakeTarget t;
    t.arm = refused();
    t.status = [&](unsigned n) {
        if (n == 0) return answer({before});
        if (t.confirmed) return answer({promoted});
        if (n < 3) return refused();
        return answer({waiting});
    };
    auto r = run(t);
    CHECK(r.report.outcome == deploy::Outcome::promoted);
    CHECK(r.report.trial_id == trial_id);
    CHECK(t.called("confirm " + trial_id));
    CHECK(
        r.said("no trial ID from 'try' (ssh: connect to host web1 port 22: Connection refused); reading it from "
               "the target's status"));
}

TEST_CASE("deploy state: garbage from status --json", "[deploy][bad-input]") {
    FakeTarget t;
    SECTION("before arming: nothing is armed, the cause is reported") {
        t.status = [](unsigned) { return answer({R"({"default": 3, "entries": "many"})"}); };
        auto r = run(t);
        CHECK(r.report.outcome == deploy::Outcome::unreachable);
        CHECK(r.report.detail.starts_with("unreadable status: "));
        CHECK(deploy::report_line(r.report).starts_with("web1: unreachable, nothing deployed: unreadable status: "));
        CHECK(t.calls == std::vector<std::string>{"--json status"});
    }
    SECTION("no JSON at all before arming") {
        t.status = [](unsigned) { return answer({"Welcome to web1!", "nixboot: command not found"}); };
        auto r = run(t);
        CHECK(r.report.outcome == deploy::Outcome::unreachable);
        CHECK(r.report.detail == "status printed no JSON");
        CHECK(t.calls.size() == 1);
    }
    SECTION("during the wait: read as no answer, the wait goes on, a good status later counts") {
        t.status = [&](unsigned n) {
            if (n == 0) return answer({before});
            if (t.confirmed) return answer({promoted});
            if (n == 1) return answer({"{\"entries\": ["});
            if (n == 2) return answer({R"({"entries":[{"id":7}]})"});
            if (n == 3) return answer({"[1, 2, 3]"});
            return answer({waiting});
        };
        auto r = run(t);
        CHECK(r.report.outcome == deploy::Outcome::promoted);
        CHECK(r.said("(no answer: unreadable status: "));
    }
    SECTION("the whole wait: never confirmed, the outcome is unknown, not promoted") {
        t.status = [](unsigned n) { return answer({n == 0 ? before : "{\"live_trial\": true}"}); };
        auto r = run(t);
        CHECK(r.report.outcome == deploy::Outcome::unknown);
        CHECK(r.report.detail.starts_with("no outcome within 2 s (unreadable status: "));
        CHECK_FALSE(t.confirmed);
        CHECK_FALSE(t.reverted);
    }
}

TEST_CASE("deploy state: timeouts", "[deploy]") {
    FakeTarget t;
    SECTION("every step after arming times out: no confirm, no revert, the target returns by itself") {
        t.status = [](unsigned n) { return n == 0 ? answer({before}) : timed_out(); };
        auto r = run(t);
        CHECK(r.report.outcome == deploy::Outcome::unreachable);
        CHECK(r.report.trial_id == trial_id);
        CHECK(deploy::report_line(r.report).starts_with("web1: generation 3 not confirmed: no answer for "));
        CHECK(deploy::report_line(r.report).ends_with("(timed out after 7 s); it returns to 2 by itself"));
        CHECK(
            r.said("the trial did not wait for the confirm within 2 s: not confirming (no answer: timed out after "
                   "7 s)"));
        CHECK_FALSE(t.called("confirm"));
        CHECK_FALSE(t.called("live-revert"));
    }
    SECTION("the trial answers but never waits for the confirm (its checks still run): not confirmed") {
        t.status = [](unsigned n) { return answer({n == 0 ? before : checking}); };
        auto r = run(t);
        CHECK(r.report.outcome == deploy::Outcome::unknown);
        CHECK(r.report.detail == "no outcome within 2 s");
        CHECK(r.said("the trial did not wait for the confirm within 2 s: not confirming"));
        CHECK_FALSE(t.confirmed);
    }
    SECTION("the confirm times out, the target promotes anyway: reported as the target shows it") {
        t.confirm = [] { return timed_out(); };
        t.status = [&](unsigned n) { return answer({n == 0 ? before : t.confirmed ? promoted : waiting}); };
        auto r = run(t);
        CHECK(r.report.outcome == deploy::Outcome::promoted);
        CHECK(r.said("confirm failed: timed out after 7 s"));
    }
    SECTION("arming times out on a live trial: nothing is reported as deployed") {
        auto o = options();
        o.mode = deploy::TrialMode::live;
        t.arm = timed_out();
        t.status = [](unsigned n) { return answer({n == 0 ? before : promoted}); };
        auto r = run(t, o);
        CHECK(t.calls[1] == "--json try 3 --live --confirm-timeout 60");
        // 'try' may have armed before the step timed out: the status decides.
        CHECK(r.report.outcome == deploy::Outcome::promoted);
    }
}

TEST_CASE("deploy state: a confirm that races the window's end", "[deploy]") {
    TempDir tmp;
    FakeTarget t;
    const std::string reason = "trial boot of generation 3: no confirmation from outside within 60 s";
    SECTION("the window closed just before the confirm arrived: 'too late', the rollback is reported") {
        bool closed = false;
        t.confirm = [&] {
            closed = true;
            return answer({"nixboot: confirm: no trial waits for a confirmation: trial " + trial_id +
                           " of generation 3 was reverted at 2026-12-06 12:00:00: " + reason},
                          1);
        };
        t.status = [&](unsigned n) {
            if (n == 0) return answer({before});
            if (closed) return n % 2 ? refused() : answer({rolled_back(reason)});  // rebooting back to 2
            return answer({waiting});
        };
        auto r = run(t);
        CHECK(r.report.outcome == deploy::Outcome::rolled_back);
        CHECK(deploy::report_line(r.report) == "web1: rolled back to 2: " + reason);
        CHECK(r.said("confirm failed: nixboot: confirm: no trial waits for a confirmation: trial " + trial_id));
    }
    SECTION("a deployer check outlasts the window: it is stopped at the window's end and the trial reverted") {
        auto o = options();
        o.confirm_timeout = 2;  // the check's 60 s are cut to what is left of these (at least 1 s)
        t.status = [&](unsigned n) {
            if (n == 0) return answer({before});
            if (t.reverted) return answer({rolled_back("deployer check slow failed")});
            return answer({waiting});
        };
        auto r = run(t, o, check(tmp, "slow", "echo starting; exec sleep 30"));
        CHECK(t.reverted);
        CHECK_FALSE(t.confirmed);
        CHECK(r.report.outcome == deploy::Outcome::rolled_back);
        const auto revert = std::find_if(t.calls.begin(), t.calls.end(),
                                         [](const auto& c) { return c.starts_with("live-revert --reason "); });
        REQUIRE(revert != t.calls.end());
        CHECK(revert->starts_with("live-revert --reason deployer check slow failed: starting ("));
        // "(killed after the 1989 ms timeout)": the check's 60 s cut to the window's rest.
        INFO(*revert);
        const auto at = revert->find("(killed after the ");
        REQUIRE(at != std::string::npos);
        const unsigned ms = std::stoul(revert->substr(at + 18));
        CHECK(ms >= 1000);
        CHECK(ms <= 2000);
    }
}
