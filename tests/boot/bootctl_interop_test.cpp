// Interop: the real `bootctl list` (systemd's own BLS parser) reads the
// entries nixboot writes and agrees on IDs, titles, counters, order and the
// default. bootctl insists on the root of a filesystem: a tmpfs ESP.
#include "tests/cli/rig.hpp"

#include "tests/catch.hpp"

#include <nlohmann/json.hpp>

using namespace nixboot;

namespace {}  // namespace

TEST_CASE("bootctl list agrees with the entries nixboot writes", "[interop]") {
    NIXBOOT_NEED_PROGRAM(bootctl, "bootctl");
    NIXBOOT_SKIP_UNLESS_ROOT("bootctl wants the ESP to be a mounted file system: a tmpfs");
    test::Rig rig(0, "systemd-boot 252.39-1~deb12u1");
    test::TmpfsMount mnt(rig.esp, "8m");
    for (unsigned n = 1; n <= 4; ++n)
        test::make_generation(rig.store, rig.profile, n,
                              n == 3 ? std::vector<std::string>{"gaming"} : std::vector<std::string>{});
    rig.point_profile(2);
    SdBootBackend be(rig.backend_options());
    Machine m(be, rig.machine_options(3));
    m.install();
    m.try_generation(4, TryOptions{3, Reboot::no, false});
    rig.boot();  // 4+3 -> 4+2-1
    m.mark_bad("nixos-generation-1", "test");

    auto r = test::run_program({bootctl, "--esp-path=" + rig.esp.string(), "--no-pager", "--json=short", "list"},
                               {"SYSTEMD_RELAX_ESP_CHECKS=1"});
    INFO(r.err);
    REQUIRE(r.status == 0);
    // bootctl 252 prints one JSON object a line; 257 and later one array.
    std::vector<nlohmann::json> listed;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty()) continue;
        auto doc = nlohmann::json::parse(line);
        if (doc.is_array())
            for (auto& e : doc) listed.push_back(e);
        else
            listed.push_back(doc);
    }
    auto view = be.read();
    REQUIRE(listed.size() == view.entries.size());
    for (std::size_t i = 0; i < listed.size(); ++i) {
        const auto& b = listed[i];
        const auto& e = view.entries[i];  // same order as systemd's own sort
        INFO(b.dump());
        CHECK(b["id"] == e.id + ".conf");  // bootctl 252 strips the counter from the ID
        CHECK(b["title"] == e.title);
        CHECK(b["version"] == e.version);
        CHECK(b["path"] == (rig.esp / e.file).string());
        if (e.state == EntryState::good) {
            CHECK_FALSE(b.contains("triesLeft"));
        } else {
            CHECK(b["triesLeft"] == e.tries_left);
            CHECK(b.value("triesDone", 0u) == e.tries_done);
        }
    }
    CHECK(listed.front()["id"] == "nixos-generation-4.conf");  // the counted trial, newest
    CHECK(listed.back()["id"] == "nixos-generation-1.conf");   // bad: last

    // The human listing marks the same default nixboot computes, with counters.
    auto t = test::run_program({bootctl, "--esp-path=" + rig.esp.string(), "--no-pager", "list"},
                               {"SYSTEMD_RELAX_ESP_CHECKS=1"});
    REQUIRE(t.status == 0);
    REQUIRE(view.persistent_default == std::optional<std::string>("nixos-generation-2"));
    CHECK(t.out.find("Generation 2 NixOS 24.05 (Linux 6.6.2), Built on") != std::string::npos);
    auto def = t.out.find("(default)");
    REQUIRE(def != std::string::npos);
    auto line_start = t.out.rfind('\n', def);
    CHECK(t.out.substr(line_start, def - line_start).find("Generation 2 ") != std::string::npos);
    CHECK(t.out.find("tries: 2 left; 1 done") != std::string::npos);
    CHECK(t.out.find("tries: 0 left") != std::string::npos);
    CHECK(t.out.find("title: NixOS (gaming)") != std::string::npos);
}
