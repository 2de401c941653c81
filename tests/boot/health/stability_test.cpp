// The stability window (stability-window = S): the restart-count parser and
// comparison, and trial boots end to end with `systemctl show` replaced by a
// script that answers each call from the next file of a list, as systemd
// would at the start and the end of the window.
#include "boot/health/stability.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/health/check_rig.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::health;
using namespace nixboot::test;

namespace {

const std::string steady =
    "Id=sshd.service\nNRestarts=0\nActiveState=active\n\n"
    "ActiveState=active\nNRestarts=1\nId=web.service\n";

// `systemctl show` answers the Nth call with answers[N-1] (the last one after
// that) and exits `show_status`; every other call is recorded as before.
void answer_show(CheckRig& c, const std::vector<std::string>& answers, int show_status = 0) {
    const auto dir = c.rig.tmp / "show";
    std::filesystem::create_directories(dir);
    for (std::size_t i = 0; i < answers.size(); ++i) write_file(dir / std::to_string(i + 1), answers[i]);
    write_script(c.systemctl,
                 "#!/bin/sh\nif [ \"$1\" = show ]; then\n"
                 "  n=$(( $(cat '" +
                     (dir / "n").string() +
                     "' 2>/dev/null || echo 0) + 1 ))\n"
                     "  echo $n > '" +
                     (dir / "n").string() +
                     "'\n"
                     "  [ -e '" +
                     dir.string() + "'/$n ] || n=" + std::to_string(answers.size()) +
                     "\n"
                     "  cat '" +
                     dir.string() + "'/$n\n  exit " + std::to_string(show_status) +
                     "\nfi\n"
                     "echo \"systemctl $*\" >> '" +
                     c.calls.string() + "'\n");
}

}  // namespace

TEST_CASE("stability: systemctl show output parses by key, in any order", "[health][stability]") {
    auto s = parse_service_states(steady, "systemctl show");
    REQUIRE(s.size() == 2);
    CHECK(s["sshd.service"] == ServiceState{0, "active"});
    CHECK(s["web.service"] == ServiceState{1, "active"});
    CHECK(parse_service_states("\n\n", "x").empty());
    CHECK(parse_service_states("Id=a.service\r\nNRestarts=2\r\n", "x")["a.service"].restarts == 2);
}

TEST_CASE("stability: malformed output names the command and the unit", "[health][stability][bad-input]") {
    CHECK_THROWS_WITH(parse_service_states("Id=a.service\nNRestarts=many\n", "systemctl show"),
                      "systemctl show: a.service: NRestarts 'many' is not a number");
    CHECK_THROWS_WITH(parse_service_states("NRestarts=1\n\nId=b.service\n", "systemctl show"),
                      "systemctl show: unit block 1 has no Id");
    CHECK_THROWS_WITH(parse_service_states("Id=a.service\nNRestarts=\n", "o"),
                      "o: a.service: NRestarts '' is not a number");
}

TEST_CASE("stability: restarts and new failures are what counts", "[health][stability]") {
    ServiceStates before{{"a.service", {0, "active"}}, {"b.service", {2, "failed"}}, {"c.service", {0, "active"}}};
    ServiceStates after{{"a.service", {3, "activating"}},
                        {"b.service", {2, "failed"}},
                        {"c.service", {0, "failed"}},
                        {"d.service", {1, "active"}}};
    CHECK(instability(before, after) ==
          std::vector<std::string>{"a.service restarted 3 times", "c.service failed", "d.service restarted 1 time"});
    CHECK(instability(before, before).empty());
}

TEST_CASE("stability: a trial whose checks keep passing and no service restarts is promoted",
          "[health][stability][cli]") {
    CheckRig c("stability-window = 1\n");
    c.check_script("required/ok", "exit 0");
    answer_show(c, {steady, steady});
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    auto r = c.check();
    INFO(r.out + r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("verdict on nixos-generation-3: good: the required check passed, and kept passing with no "
                     "service restarting for 1 s\n") != std::string::npos);
    const auto events = c.events_for(3);
    CHECK(std::find(events.begin(), events.end(), "good") != events.end());
}

TEST_CASE("stability: a service that restarts within the window fails the trial", "[health][stability][cli]") {
    CheckRig c("stability-window = 1\n");
    c.check_script("required/ok", "exit 0");
    answer_show(c, {steady,
                    "Id=sshd.service\nNRestarts=0\nActiveState=active\n\n"
                    "Id=web.service\nNRestarts=4\nActiveState=activating\n"});
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    auto r = c.check();
    CHECK(r.status == 1);
    CHECK(r.out.find("verdict on nixos-generation-3: bad: checks passed, but within the 1 s stability window "
                     "web.service restarted 3 times\n") != std::string::npos);
    CHECK(lines_of(read_file(c.calls)).back() == "reboot ");
    CHECK(c.events_for(3).back() == "bad");
}

TEST_CASE("stability: a check that fails by the end of the window fails the trial", "[health][stability][cli]") {
    CheckRig c("stability-window = 1\n");
    const auto count = (c.rig.tmp / "runs").string();
    c.check_script("required/web", "n=$(( $(cat '" + count + "' 2>/dev/null || echo 0) + 1 )); echo $n > '" + count +
                                       "'\n[ $n = 1 ] || { echo 'http 502'; exit 1; }");
    answer_show(c, {steady, steady});
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    auto r = c.check();
    CHECK(r.status == 1);
    CHECK(r.out.find("verdict on nixos-generation-3: bad: checks passed, then failed within the 1 s stability "
                     "window: required check 'web' failed (exit status 1)\n") != std::string::npos);
}

TEST_CASE("stability: restart counts that cannot be read fail the trial with the command's error",
          "[health][stability][cli]") {
    CheckRig c("stability-window = 1\n");
    c.check_script("required/ok", "exit 0");
    answer_show(c, {"Failed to connect to bus\n"}, 1);
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    auto r = c.check();
    INFO(r.out + r.err);
    CHECK(r.status == 1);
    CHECK(r.out.find("verdict on nixos-generation-3: bad: the required check passed, but the stability window "
                     "could not be watched: reading the services' restart counts: '" +
                     c.systemctl.string() +
                     " show --property=Id,NRestarts,ActiveState -- *.service' exit status 1\n") != std::string::npos);
}

TEST_CASE("stability: the window is cut to what verdict-timeout leaves", "[health][stability][cli]") {
    CheckRig c("stability-window = 3000\ncheck-timeout = 5\n");  // verdict-timeout = 600, uptime 30 s
    c.check_script("required/ok", "exit 0");
    write_file(c.uptime, "594.00 40.00\n");  // 600 - 594 - (5 + 5) < 0: no wait at all
    answer_show(c, {steady, steady});
    REQUIRE(c.nixboot({"try", "3"}).status == 0);
    c.boot();
    write_file(c.uptime, "594.00 40.00\n");
    auto r = c.check();
    CHECK(r.status == 0);
    CHECK(r.out.find("the stability window is cut to 0 s: the verdict is due at verdict-timeout (600 s after boot)") !=
          std::string::npos);
}

TEST_CASE("stability: a bad stability-window value is one line, exit 2", "[health][stability][bad-input]") {
    CheckRig c;
    write_file(c.config, read_file(c.config) + "stability-window = soon\n");
    auto r = c.nixboot({"status"});
    CHECK(r.status == 2);
    CHECK(r.err == "nixboot: " + c.config.string() + ":4: stability-window: 'soon' is not a number\n");
}
