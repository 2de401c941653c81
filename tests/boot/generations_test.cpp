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
    for (unsigned n : {1u, 2u, 10u, 3u}) test::make_generation(store, profile, n, n == 2 ? std::vector<std::string>{"alt"} : std::vector<std::string>{});
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
    CHECK(scan.skipped[0].reason ==
          (store / "system-4/boot.json").string() +
              ": not JSON: parse error at line 1, column 4: syntax error while parsing object key - invalid literal; last read: "
              "'{ no'; expected string literal");
    CHECK(scan.skipped[1].number == 5);
    CHECK(scan.skipped[1].reason == "'" + (tmp / "profiles/system-5-link").string() + "' does not lead to a system ('" +
                                        (store / "gone").string() + "': No such file or directory)");
    CHECK(scan.skipped[2].number == 6);
    CHECK(scan.skipped[2].reason == "kernel '" + (store / "system-6/kernel-file").string() + "': No such file or directory");
    CHECK(scan.skipped[3].number == 7);
    CHECK(scan.skipped[3].reason == "specialisation 'broken': initrd '" + (store / "system-7-broken/initrd-file").string() +
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
    for (const auto& e : std::filesystem::directory_iterator(tmp / "profiles")) names.push_back(e.path().filename().string());
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
    CHECK_THROWS_WITH(read_generation(links[1]), "'" + (tmp / "store/system-2").string() +
                                                    "': no boot.json and no usable 'kernel' (No such file or directory)");
}
