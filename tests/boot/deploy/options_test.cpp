// The fleet file and the command line: one set of keys, the command line wins.
#include "boot/deploy/options.hpp"

#include "boot/util/error.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::deploy;

TEST_CASE("deploy options: the fleet file, then the command line over it", "[deploy]") {
    const auto file = parse_deploy_file(
        "# fleet\nhosts = root@web1 web2\nmode = live\nparallel = 3\n"
        "check = /c/ssh-reachable\ncheck = '/c/tcp-port 443'\npoll-interval = 0.25\n"
        "ssh-options = -p 2222  -i /k\n",
        "fleet.conf");
    DeployOptions o;
    apply_deploy_file(o, file, "fleet.conf", {"parallel"});
    apply_deploy_value(o, "parallel", "5", "--parallel");
    CHECK(o.hosts == std::vector<std::string>{"root@web1", "web2"});
    CHECK(o.mode == TrialMode::live);
    CHECK(o.parallel == 5);
    CHECK(o.checks == std::vector<std::string>{"/c/ssh-reachable", "/c/tcp-port 443"});
    CHECK(o.poll_interval == std::chrono::milliseconds(250));
    CHECK(o.ssh.user_options == std::vector<std::string>{"-p", "2222", "-i", "/k"});
    CHECK(select_hosts(o.hosts, {}, "fleet.conf") == o.hosts);
    CHECK(select_hosts(o.hosts, {"web2"}, "fleet.conf") == std::vector<std::string>{"web2"});
    CHECK(select_hosts({}, {"db1"}, "the command line") == std::vector<std::string>{"db1"});
}

TEST_CASE("deploy options: bad values name their origin", "[deploy][bad-input]") {
    DeployOptions o;
    CHECK_THROWS_WITH(parse_deploy_file("hosts = a\n[host.a]\n", "f"), "f:2: unknown section '[host.a]'");
    CHECK_THROWS_WITH(parse_deploy_file("tries = 2\n", "f"), "f:1: unknown key 'tries'");
    CHECK_THROWS_WITH(apply_deploy_value(o, "mode", "later", "f:3"), "f:3: mode: 'later' is not reboot or live");
    CHECK_THROWS_WITH(apply_deploy_value(o, "poll-interval", "0.01", "--poll-interval"),
                      "--poll-interval: '0.01' is not a number of seconds from 0.05 to 3600");
    CHECK_THROWS_WITH(apply_deploy_value(o, "poll-interval", "1.2345", "--poll-interval"),
                      "--poll-interval: '1.2345' is not a number of seconds from 0.05 to 3600");
    CHECK_THROWS_WITH(apply_deploy_value(o, "hosts", "a b\x01", "f:1"),
                      "host 'b\x01': holds whitespace or a control character");
    CHECK_THROWS_AS(apply_deploy_value(o, "parallel", "0", "--parallel"), UsageError);
}
