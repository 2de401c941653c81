#include "boot/bootspec.hpp"

#include "boot/util/error.hpp"
#include "tests/boot/util/test_support.hpp"

#include "tests/catch.hpp"

#include <random>

using namespace nixboot;

namespace {

// Shaped like a real NixOS boot.json (24.05), trimmed.
const std::string real_boot_json = R"JSON({
  "org.nixos.bootspec.v1": {
    "init": "/nix/store/a1-nixos-system-host-24.05/init",
    "initrd": "/nix/store/b2-initrd-linux-6.6.30/initrd",
    "initrdSecrets": "/nix/store/c3-append-initrd-secrets/bin/append-initrd-secrets",
    "kernel": "/nix/store/d4-linux-6.6.30/bzImage",
    "kernelParams": ["loglevel=4", "net.ifnames=0"],
    "label": "NixOS 24.05.20240501.abcdef (Linux 6.6.30)",
    "system": "x86_64-linux",
    "toplevel": "/nix/store/a1-nixos-system-host-24.05"
  },
  "org.nixos.specialisation.v1": {
    "no-gui": {
      "org.nixos.bootspec.v1": {
        "init": "/nix/store/e5-nixos-system-host-24.05/init",
        "kernel": "/nix/store/d4-linux-6.6.30/bzImage",
        "kernelParams": [],
        "label": "NixOS 24.05 no-gui",
        "system": "x86_64-linux",
        "toplevel": "/nix/store/e5-nixos-system-host-24.05"
      },
      "org.nixos.systemd-boot": {"sortKey": "nixos-b", "devicetree": null}
    }
  },
  "org.nixos.systemd-boot": {"sortKey": "nixos", "devicetree": "/nix/store/f6-dtbs/board.dtb"},
  "org.example.unknown": [1, 2, 3]
})JSON";

}  // namespace

TEST_CASE("bootspec: a real boot.json", "[bootspec]") {
    const BootDocument doc = parse_bootspec(real_boot_json, "/nix/store/a1/boot.json");
    CHECK(doc.boot.label == "NixOS 24.05.20240501.abcdef (Linux 6.6.30)");
    CHECK(doc.boot.kernel == "/nix/store/d4-linux-6.6.30/bzImage");
    CHECK(doc.boot.initrd == "/nix/store/b2-initrd-linux-6.6.30/initrd");
    CHECK(doc.boot.init == "/nix/store/a1-nixos-system-host-24.05/init");
    CHECK(doc.boot.kernel_params == std::vector<std::string>{"loglevel=4", "net.ifnames=0"});
    CHECK(doc.boot.initrd_secrets == "/nix/store/c3-append-initrd-secrets/bin/append-initrd-secrets");
    CHECK(doc.boot.sort_key == "nixos");
    CHECK(doc.boot.devicetree == "/nix/store/f6-dtbs/board.dtb");
    REQUIRE(doc.specialisations.size() == 1);
    const BootSpec& sub = doc.specialisations.at("no-gui");
    CHECK_FALSE(sub.initrd);
    CHECK(sub.kernel_params.empty());
    CHECK(sub.sort_key == "nixos-b");
    CHECK_FALSE(sub.devicetree);
    CHECK(parse_bootspec(format_bootspec(doc), "round") == doc);
}

TEST_CASE("bootspec: malformed documents name the origin and the field", "[bootspec]") {
    const std::string o = "/nix/store/x/boot.json";
    CHECK_THROWS_WITH(
        parse_bootspec("{", o),
        o + ": not JSON: parse error at line 1, column 2: syntax error while parsing object key - unexpected "
            "end of input; expected string literal");
    CHECK_THROWS_WITH(parse_bootspec("[]", o), o + ": not a JSON object");
    // A number that overflows a double is nlohmann's out_of_range, not parse_error (found by fuzz/boot/bootspec_fuzz.cpp's sibling for the journal).
    CHECK_THROWS_WITH(parse_bootspec(R"({"x": 1e400})", o), o + ": not JSON: number overflow parsing '1e400'");
    CHECK_THROWS_WITH(parse_bootspec("{}", o), o + ": missing \"org.nixos.bootspec.v1\"");
    CHECK_THROWS_WITH(parse_bootspec(R"({"org.nixos.bootspec.v1": 3})", o),
                      o + ": \"org.nixos.bootspec.v1\" is not an object");
    auto with = [&](const std::string& from, const std::string& to) {
        std::string text = real_boot_json;
        const auto at = text.find(from);
        REQUIRE(at != std::string::npos);
        return text.replace(at, from.size(), to);
    };
    CHECK_THROWS_WITH(parse_bootspec(with(R"("kernel": "/nix/store/d4-linux-6.6.30/bzImage",)", ""), o),
                      o + ": missing field \"kernel\" in \"org.nixos.bootspec.v1\"");
    CHECK_THROWS_WITH(parse_bootspec(with(R"("kernel": "/nix/store/d4-linux-6.6.30/bzImage",)", R"("kernel": 42,)"), o),
                      o + ": field \"kernel\" of \"org.nixos.bootspec.v1\" is not a string");
    CHECK_THROWS_WITH(
        parse_bootspec(with(R"("kernel": "/nix/store/d4-linux-6.6.30/bzImage",)", R"("kernel": "bzImage",)"), o),
        o + ": field \"kernel\" of \"org.nixos.bootspec.v1\" is not an absolute path: 'bzImage'");
    CHECK_THROWS_WITH(parse_bootspec(with(R"(["loglevel=4", "net.ifnames=0"])", R"(["a\nb"])"), o),
                      o + ": kernelParams[0] contains a control character");
    CHECK_THROWS_WITH(parse_bootspec(with(R"(["loglevel=4", "net.ifnames=0"])", R"("loglevel=4")"), o),
                      o + ": field \"kernelParams\" of \"org.nixos.bootspec.v1\" is not an array");
    CHECK_THROWS_WITH(parse_bootspec(with(R"("no-gui")", R"("no gui")"), o),
                      o + ": specialisation 'no gui': name contains whitespace; allowed are [A-Za-z0-9._-]");
    CHECK_THROWS_WITH(
        parse_bootspec(with(R"("no-gui")", R"("a+1")"), o),
        o + ": specialisation 'a+1': name contains '+' (it would corrupt boot counters); allowed are [A-Za-z0-9._-]");
    CHECK_THROWS_WITH(parse_bootspec(with(R"("no-gui")", R"("a/b")"), o),
                      o + ": specialisation 'a/b': name contains '/'; allowed are [A-Za-z0-9._-]");
    CHECK_THROWS_WITH(parse_bootspec(with(R"("sortKey": "nixos-b")", R"("sortKey": 1)"), o),
                      o + ": specialisation 'no-gui': \"org.nixos.systemd-boot\" field \"sortKey\" is not a string");
    CHECK_THROWS_WITH(parse_bootspec(with(R"("label": "NixOS 24.05 no-gui",)", ""), o),
                      o + ": specialisation 'no-gui': missing field \"label\" in \"org.nixos.bootspec.v1\"");
    CHECK_THROWS_WITH(parse_bootspec(std::string(1024 * 1024 + 1, ' '), o), o + ": larger than 1 MiB");
    CHECK_THROWS_AS(parse_bootspec("{", o), ParseError);
}

TEST_CASE("bootspec: specialisation names", "[bootspec]") {
    CHECK_NOTHROW(validate_specialisation_name("no-gui_2.old", "o"));
    CHECK_THROWS_WITH(validate_specialisation_name("", "o"), "o: specialisation with an empty name");
    CHECK_THROWS_WITH(validate_specialisation_name(".hidden", "o"),
                      "o: specialisation '.hidden': name starts with '.'");
    CHECK_THROWS_WITH(validate_specialisation_name("tab\there", "o"),
                      "o: specialisation 'tab\there': name contains whitespace; allowed are [A-Za-z0-9._-]");
    CHECK_THROWS_WITH(validate_specialisation_name("bell\x07", "o"),
                      "o: specialisation 'bell\x07': name contains a control character; allowed are [A-Za-z0-9._-]");
    CHECK_THROWS_WITH(validate_specialisation_name(std::string(65, 'a'), "o"),
                      "o: specialisation '" + std::string(65, 'a') + "': name longer than 64 bytes");
}

TEST_CASE("bootspec: parse(format(x)) == x for generated documents", "[bootspec]") {
    std::mt19937 rng(11);
    auto word = [&](const char* prefix) { return std::string(prefix) + std::to_string(rng() % 100000); };
    auto spec = [&] {
        BootSpec s;
        s.label = word("NixOS \"quoted\" \xc3\xa9 ");
        s.kernel = word("/nix/store/k");
        if (rng() % 2) s.initrd = word("/nix/store/i");
        s.init = word("/nix/store/init");
        s.toplevel = word("/nix/store/top");
        s.system = "x86_64-linux";
        for (unsigned k = rng() % 5; k > 0; --k) s.kernel_params.push_back(word("p="));
        if (rng() % 2) s.initrd_secrets = word("/nix/store/sec");
        if (rng() % 2) s.sort_key = word("key");
        if (rng() % 2) s.devicetree = word("/nix/store/dt");
        return s;
    };
    for (int i = 0; i < 300; ++i) {
        BootDocument doc;
        doc.boot = spec();
        for (unsigned k = rng() % 4; k > 0; --k) doc.specialisations[word("spec-")] = spec();
        REQUIRE(parse_bootspec(format_bootspec(doc), "gen") == doc);
    }
}

TEST_CASE("bootspec: boot.json of a toplevel, and the legacy files", "[bootspec]") {
    test::TempDir tmp;
    const auto top = test::make_generation(tmp / "store", tmp / "profiles/system", 3, {"alt"});
    const BootDocument doc = read_boot_document(top);
    CHECK(doc.boot.kernel == (top / "kernel-file").string());
    CHECK(doc.specialisations.count("alt") == 1);

    // An old toplevel without boot.json.
    const auto old = tmp / "store/old-system";
    test::write_file(tmp / "store/linux/bzImage", "k");
    test::write_file(tmp / "store/initrd/initrd", "i");
    std::filesystem::create_directories(old);
    std::filesystem::create_symlink(tmp / "store/linux/bzImage", old / "kernel");
    std::filesystem::create_symlink(tmp / "store/initrd/initrd", old / "initrd");
    test::write_file(old / "init", "#!/bin/sh\n");
    test::write_file(old / "kernel-params", "loglevel=4  quiet\n");
    test::write_file(old / "nixos-version", "20.09.1234\n");
    test::write_file(old / "system", "x86_64-linux");
    test::write_file(tmp / "store/old-sub/init", "#!/bin/sh\n");
    std::filesystem::create_symlink(tmp / "store/linux/bzImage", tmp / "store/old-sub/kernel");
    std::filesystem::create_directories(old / "specialisation");
    std::filesystem::create_directory_symlink(tmp / "store/old-sub", old / "specialisation/console");
    const BootDocument legacy = read_boot_document(old);
    CHECK(legacy.boot.kernel == (tmp / "store/linux/bzImage").string());
    CHECK(legacy.boot.initrd == (tmp / "store/initrd/initrd").string());
    CHECK(legacy.boot.init == (old / "init").string());
    CHECK(legacy.boot.toplevel == old.string());
    CHECK(legacy.boot.label == "NixOS 20.09.1234");
    CHECK(legacy.boot.system == "x86_64-linux");
    CHECK(legacy.boot.kernel_params == std::vector<std::string>{"loglevel=4", "quiet"});
    REQUIRE(legacy.specialisations.count("console") == 1);
    CHECK_FALSE(legacy.specialisations.at("console").initrd);
    CHECK(legacy.specialisations.at("console").label == "NixOS");

    // A version that is not UTF-8 (it would end up in entry titles) is dropped.
    test::write_file(old / "nixos-version", "20.09-caf\xe9 x\n");
    CHECK(read_boot_document(old).boot.label == "NixOS");

    std::filesystem::remove(old / "kernel");
    CHECK_THROWS_WITH(read_boot_document(old),
                      "'" + old.string() + "': no boot.json and no usable 'kernel' (No such file or directory)");
}

TEST_CASE("bootspec: mutated documents are refused with ParseError, never anything else", "[bootspec]") {
    std::mt19937 rng(37);
    const std::string alphabet = "{}[]\":,0123456789abc/ \\";
    for (int i = 0; i < 3000; ++i) {
        std::string text = real_boot_json;
        for (unsigned k = 1 + rng() % 4; k > 0; --k) {
            const std::size_t at = rng() % text.size();
            switch (rng() % 3) {
                case 0: text[at] = alphabet[rng() % alphabet.size()]; break;
                case 1: text.erase(at, 1 + rng() % 8); break;
                default: text.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
            }
        }
        try {
            const BootDocument doc = parse_bootspec(text, "m.json");
            REQUIRE(parse_bootspec(format_bootspec(doc), "m.json") == doc);
        } catch (const ParseError& e) {
            REQUIRE(std::string(e.what()).starts_with("m.json: "));
        }
    }
}

TEST_CASE("bootspec: no specialisation name can escape the entries directory or reach GRUB script", "[bootspec]") {
    // Each is refused before any file name or grub.cfg line is formed.
    for (const std::string name :
         {"..",   "../x", "a/b", "x'y", "x\"y", "a\nb", "a+1", "$x", "a;b",  "{a}", "a`b`",
          "a\\b", "a b",  "a|b", "a&b", "a<b",  "a>b",  "a*",  "a?", "a[1]", "a#b", "a$(id)"}) {
        INFO(name);
        CHECK_THROWS_AS(validate_specialisation_name(name, "o"), ParseError);
    }
    CHECK_THROWS_WITH(validate_specialisation_name("..", "o"), "o: specialisation '..': name starts with '.'");
    CHECK_THROWS_WITH(validate_specialisation_name("x'y", "o"),
                      "o: specialisation 'x'y': name contains '''; allowed are [A-Za-z0-9._-]");
    CHECK_THROWS_WITH(validate_specialisation_name("a;b", "o"),
                      "o: specialisation 'a;b': name contains ';'; allowed are [A-Za-z0-9._-]");
}
