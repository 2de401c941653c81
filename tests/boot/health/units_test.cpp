// The shipped unit files (cli/units/) pass systemd's own verifier, with the
// built binaries substituted for the install paths, and carry the ordering
// the design depends on.
#include "tests/boot/health/health_support.hpp"

#include "tests/catch.hpp"

using namespace nixboot::test;

namespace {
const std::filesystem::path units = std::filesystem::path(NIXBOOT_SOURCE_DIR) / "cli/units";

std::string substituted(const std::string& name) {
    std::string text = read_file(units / name);
    auto replace = [&](const std::string& from, const std::string& to) {
        for (auto p = text.find(from); p != std::string::npos; p = text.find(from, p + to.size()))
            text.replace(p, from.size(), to);
    };
    replace("/usr/bin/nixboot-stage1", NIXBOOT_STAGE1_BIN);
    replace("/usr/bin/nixboot ", std::string(NIXBOOT_BIN) + " ");
    return text;
}
}  // namespace

TEST_CASE("units: systemd-analyze verify accepts them", "[health][units]") {
    NIXBOOT_NEED_PROGRAM(systemd_analyze, "systemd-analyze");
    TempDir tmp;
    for (const char* name : {"nixboot-check.service", "nixboot-watchdog.service", "nixboot-rolled-back.target"})
        write_file(tmp / name, substituted(name));
    auto r = run_program({systemd_analyze, "verify", "--man=no", (tmp / "nixboot-check.service").string(),
                          (tmp / "nixboot-watchdog.service").string(), (tmp / "nixboot-rolled-back.target").string()},
                         {"SYSTEMD_LOG_LEVEL=notice"});
    INFO(r.out << r.err);
    CHECK(r.status == 0);
    CHECK(r.err.empty());
}

TEST_CASE("units: ordering around boot-complete.target and early start of the feeder", "[health][units]") {
    auto check = read_file(units / "nixboot-check.service");
    CHECK(check.find("\nAfter=multi-user.target\n") != std::string::npos);
    CHECK(check.find("\nBefore=boot-complete.target\n") != std::string::npos);
    CHECK(check.find("\nRequiresMountsFor=/boot\n") != std::string::npos);
    CHECK(check.find("\nRequiredBy=boot-complete.target\n") != std::string::npos);
    CHECK(check.find("\nExecStart=/usr/bin/nixboot check --until-verdict\n") != std::string::npos);
    auto feeder = read_file(units / "nixboot-watchdog.service");
    CHECK(feeder.find("\nDefaultDependencies=no\n") != std::string::npos);
    CHECK(feeder.find("\nConditionPathExists=/run/nixboot/boot\n") != std::string::npos);
    CHECK(feeder.find("\nExecStart=/usr/bin/nixboot-stage1 feed\n") != std::string::npos);
    CHECK(feeder.find("\nWantedBy=sysinit.target\n") != std::string::npos);
}
