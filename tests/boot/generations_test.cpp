#include "boot/generations.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include <sys/stat.h>

using namespace nixboot;

TEST_CASE("generations: discovered in order, broken ones skipped with the reason", "[generations]") {
    test::TempDir tmp;
    const auto store = tmp / "store";
    const auto profile = tmp / "profiles/system";
    for (unsigned n : {1u, 2u, 10u, 3u})
        test::make_generation(store, profile, n, n == 2 ? std::vector<std::string>{"alt"} : std::vector<std::string>{});
    // 4: malformed boot.json; 5: dangling link; 6: kernel missing; 7: bad specialisation kernel.
    test::make_generation(store, profile, 4);
    test::write_file(store / "system-4/boot.json", "{ not json");
    std::filesystem::create_directory_symlink(store / "gone", tmp / "profiles/system-5-link");
    test::make_generation(store, profile, 6);
    std::filesystem::remove(store / "system-6/kernel-file");
    test::make_generation(store, profile, 7, {"broken"});
    std::filesystem::remove(store / "system-7-broken/initrd-file");
    // Not generations: other profiles, leading zeros, junk.
    std::filesystem::create_directory_symlink(store / "system-1", tmp / "profiles/other-1-link");
    std::filesystem::create_directory_symlink(store / "system-1", tmp / "profiles/system-01-link");
    std::filesystem::create_directory_symlink(store / "system-1", tmp / "profiles/system-x-link");
    std::filesystem::create_directory_symlink(tmp / "profiles/system-3-link", profile);

    const GenerationScan scan = discover_generations(profile);
    std::vector<unsigned> ok;
    for (const auto& g : scan.ok) ok.push_back(g.number);
    CHECK(ok == std::vector<unsigned>{1, 2, 3, 10});
    REQUIRE(scan.skipped.size() == 4);
    CHECK(scan.skipped[0].number == 4);
    CHECK(
        scan.skipped[0].reason ==
        (store / "system-4/boot.json").string() +
            ": not JSON: parse error at line 1, column 4: syntax error while parsing object key - invalid literal; last read: "
            "'{ no'; expected string literal");
    CHECK(scan.skipped[1].number == 5);
    CHECK(scan.skipped[1].reason == "'" + (tmp / "profiles/system-5-link").string() + "' does not lead to a system ('" +
                                        (store / "gone").string() + "': No such file or directory)");
    CHECK(scan.skipped[2].number == 6);
    CHECK(scan.skipped[2].reason ==
          "kernel '" + (store / "system-6/kernel-file").string() + "': No such file or directory");
    CHECK(scan.skipped[3].number == 7);
    CHECK(scan.skipped[3].reason == "specialisation 'broken': initrd '" +
                                        (store / "system-7-broken/initrd-file").string() +
                                        "': No such file or directory");

    const Generation& two = scan.ok[1];
    CHECK(two.link == tmp / "profiles/system-2-link");
    CHECK(two.toplevel == std::filesystem::canonical(store / "system-2"));
    CHECK(two.nixos_version == "24.05.2");
    CHECK(two.doc.boot.kernel_params == std::vector<std::string>{"loglevel=4", "gen=2"});
    CHECK(two.doc.specialisations.count("alt") == 1);
    struct stat st {};
    REQUIRE(::lstat(two.link.c_str(), &st) == 0);
    CHECK(two.time == st.st_mtime);

    CHECK(current_generation(profile) == 3u);
}

TEST_CASE("generations: an empty or missing profile", "[generations]") {
    test::TempDir tmp;
    std::filesystem::create_directories(tmp / "profiles");
    CHECK(discover_generations(tmp / "profiles/system").ok.empty());
    CHECK_FALSE(current_generation(tmp / "profiles/system"));
    CHECK_THROWS_WITH(discover_generations(tmp / "nothing/system"),
                      "listing generations in '" + (tmp / "nothing").string() + "': No such file or directory");
}

TEST_CASE("generations: switch_profile swaps the symlink atomically", "[generations]") {
    test::TempDir tmp;
    const auto profile = tmp / "profiles/system";
    test::make_generation(tmp / "store", profile, 1);
    test::make_generation(tmp / "store", profile, 2);
    std::filesystem::create_directory_symlink("system-2-link", profile);
    switch_profile(profile, 1);
    CHECK(std::filesystem::read_symlink(profile) == "system-1-link");
    CHECK(current_generation(profile) == 1u);
    switch_profile(profile, 1);  // again: still fine
    CHECK(current_generation(profile) == 1u);
    CHECK_THROWS_WITH(switch_profile(profile, 9), "switching '" + profile.string() + "' to generation 9: '" +
                                                      (tmp / "profiles/system-9-link").string() +
                                                      "': No such file or directory");
    CHECK(current_generation(profile) == 1u);
    // No temporary links are left behind.
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(tmp / "profiles"))
        names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"system", "system-1-link", "system-2-link"});
}

TEST_CASE("generations: links are listed cheaply and read one at a time", "[generations]") {
    test::TempDir tmp;
    const auto profile = tmp / "profiles/system";
    test::make_generation(tmp / "store", profile, 2);
    test::make_generation(tmp / "store", profile, 1);
    std::filesystem::create_symlink("../store/system-1", tmp / "profiles/system-3-link");  // relative target
    const auto links = list_generation_links(profile);
    REQUIRE(links.size() == 3);
    CHECK(links[0].number == 1);
    CHECK(links[0].link == tmp / "profiles/system-1-link");
    CHECK(links[0].target == tmp / "store/system-1");
    CHECK(links[2].target == tmp / "store/system-1");  // made absolute and normal
    const Generation g = read_generation(links[2]);
    CHECK(g.number == 3);
    CHECK(g.doc.boot.kernel == (tmp / "store/system-1/kernel-file").string());
    std::filesystem::remove(tmp / "store/system-2/boot.json");
    CHECK_THROWS_WITH(
        read_generation(links[1]),
        "'" + (tmp / "store/system-2").string() + "': no boot.json and no usable 'kernel' (No such file or directory)");
}

TEST_CASE("generations: a FIFO, a device or a symlink loop in the profile is skipped at once, never read",
          "[generations]") {
    test::TempDir tmp;
    const auto store = tmp / "store";
    const auto profile = tmp / "profiles/system";
    for (unsigned n = 1; n <= 6; ++n) test::make_generation(store, profile, n);
    // 1: FIFO as boot.json; 2: FIFO as kernel; 3: boot.json a character
    // device; 4: boot.json a symlink loop; 5: the link itself a loop;
    // 6: fine, but its nixos-version is a FIFO (read for titles).
    std::filesystem::remove(store / "system-1/boot.json");
    REQUIRE(::mkfifo((store / "system-1/boot.json").c_str(), 0644) == 0);
    std::filesystem::remove(store / "system-2/kernel-file");
    REQUIRE(::mkfifo((store / "system-2/kernel-file").c_str(), 0644) == 0);
    std::filesystem::remove(store / "system-3/boot.json");
    std::filesystem::create_symlink("/dev/zero", store / "system-3/boot.json");
    std::filesystem::remove(store / "system-4/boot.json");
    std::filesystem::create_symlink("boot.json", store / "system-4/boot.json");
    std::filesystem::remove(tmp / "profiles/system-5-link");
    std::filesystem::create_symlink("system-5-link", tmp / "profiles/system-5-link");
    std::filesystem::remove(store / "system-6/nixos-version");
    REQUIRE(::mkfifo((store / "system-6/nixos-version").c_str(), 0644) == 0);

    GenerationScan scan;
    CHECK(test::finishes_within(
        std::chrono::seconds(10),
        {store / "system-1/boot.json", store / "system-2/kernel-file", store / "system-6/nixos-version"},
        [&] { scan = discover_generations(profile); }));
    REQUIRE(scan.ok.size() == 1);
    CHECK(scan.ok[0].number == 6);
    CHECK(scan.ok[0].nixos_version.empty());
    REQUIRE(scan.skipped.size() == 5);
    CHECK(scan.skipped[0].reason == "reading '" + (store / "system-1/boot.json").string() + "': not a regular file");
    CHECK(scan.skipped[1].reason == "kernel '" + (store / "system-2/kernel-file").string() + "' is not a regular file");
    CHECK(scan.skipped[2].reason == "reading '" + (store / "system-3/boot.json").string() + "': not a regular file");
    CHECK(scan.skipped[3].reason == "reading '" + (store / "system-4/boot.json").string() + "': a symbolic link loop");
    CHECK(scan.skipped[4].reason == "'" + (tmp / "profiles/system-5-link").string() + "' does not lead to a system ('" +
                                        (tmp / "profiles/system-5-link").string() +
                                        "': Too many levels of symbolic links)");
}

namespace {

// Generation 1 of a fresh store whose main kernel/initrd path in boot.json is `kernel`.
GenerationScan scan_with_kernel(const test::TempDir& tmp, const std::string& field, const std::string& path) {
    const auto store = tmp / "store";
    const auto profile = tmp / "profiles/system";
    const auto top = test::make_generation(store, profile, 1);
    BootDocument doc = parse_bootspec(test::read_file(top / "boot.json"), "boot.json");
    if (field == "kernel")
        doc.boot.kernel = path;
    else if (field == "initrd")
        doc.boot.initrd = path;
    else
        doc.boot.devicetree = path;
    test::write_file(top / "boot.json", format_bootspec(doc));
    return discover_generations(profile);
}

}  // namespace

TEST_CASE("generations: a kernel, initrd or devicetree outside the toplevel's store is refused", "[generations]") {
    test::TempDir tmp;
    const auto store = (tmp / "store").string();
    SECTION("/proc/self/environ as the kernel") {
        const auto scan = scan_with_kernel(tmp, "kernel", "/proc/self/environ");
        REQUIRE(scan.skipped.size() == 1);
        CHECK(scan.skipped[0].reason.starts_with("kernel '/proc/self/environ' is not inside the store '" +
                                                 std::filesystem::canonical(store).string() +
                                                 "' holding the toplevel ("));
    }
    SECTION("/etc/passwd (as /etc/shadow would be) as the initrd") {
        const auto scan = scan_with_kernel(tmp, "initrd", "/etc/passwd");
        REQUIRE(scan.skipped.size() == 1);
        CHECK(scan.skipped[0].reason ==
              "initrd '/etc/passwd' is not inside the store '" + std::filesystem::canonical(store).string() +
                  "' holding the toplevel (refused: only store files are copied to the boot partition)");
    }
    SECTION("a store path with '..' as the devicetree") {
        const auto scan = scan_with_kernel(tmp, "devicetree", store + "/system-1/../../secret");
        REQUIRE(scan.skipped.size() == 1);
        CHECK(scan.skipped[0].reason ==
              "devicetree '" + store +
                  "/system-1/../../secret' contains '..' (refused: boot files must be plain store paths)");
    }
    SECTION("a store symlink that leads out of the store") {
        test::write_file(tmp / "secret", "secret");
        std::filesystem::create_directories(tmp / "store/evil");
        std::filesystem::create_symlink(tmp / "secret", tmp / "store/evil/bzImage");
        const auto scan = scan_with_kernel(tmp, "kernel", store + "/evil/bzImage");
        REQUIRE(scan.skipped.size() == 1);
        CHECK(scan.skipped[0].reason == "kernel '" + store + "/evil/bzImage' is not inside the store '" +
                                            std::filesystem::canonical(store).string() +
                                            "' holding the toplevel (it resolves to '" +
                                            std::filesystem::canonical(tmp / "secret").string() +
                                            "'; refused: only store files are copied to the boot partition)");
    }
    SECTION("a store directory that is a symlink out of the store") {
        test::write_file(tmp / "outside/bzImage", "kernel");
        std::filesystem::create_directories(tmp / "store");
        std::filesystem::create_directory_symlink(tmp / "outside", tmp / "store/linked");
        const auto scan = scan_with_kernel(tmp, "kernel", store + "/linked/bzImage");
        REQUIRE(scan.skipped.size() == 1);
        CHECK(scan.skipped[0].reason == "kernel '" + store + "/linked/bzImage' is not inside the store '" +
                                            std::filesystem::canonical(store).string() +
                                            "' holding the toplevel (it resolves to '" +
                                            std::filesystem::canonical(tmp / "outside/bzImage").string() +
                                            "'; refused: only store files are copied to the boot partition)");
    }
    SECTION("a file elsewhere in the same store is fine") {
        test::write_file(tmp / "store/linux-6.6/bzImage", "kernel");
        const auto scan = scan_with_kernel(tmp, "kernel", store + "/linux-6.6/bzImage");
        CHECK(scan.skipped.empty());
        CHECK(scan.ok.size() == 1);
    }
}
