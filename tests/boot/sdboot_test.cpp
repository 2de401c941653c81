// Pure functions of the systemd-boot backend (no disk) and the backend's view.
#include "boot/sdboot.hpp"

#include "boot/generations.hpp"
#include "boot/util/error.hpp"
#include "tests/boot/uki_image.hpp"
#include "tests/cli/rig.hpp"

#include "tests/catch.hpp"

using namespace nixboot;

TEST_CASE("LoaderInfo decides the entry ID scheme") {
    CHECK(systemd_boot_version("systemd-boot 252.39-1~deb12u1") == std::optional<unsigned>(252));
    CHECK(systemd_boot_version("systemd-boot 258") == std::optional<unsigned>(258));
    CHECK_FALSE(systemd_boot_version("GRUB 2.06"));
    CHECK_FALSE(systemd_boot_version("systemd-boot x"));
    CHECK(id_scheme_for("systemd-boot 252.39") == IdScheme::with_counter);
    CHECK(id_scheme_for("systemd-boot 257.9") == IdScheme::with_counter);
    CHECK(id_scheme_for("systemd-boot 258") == IdScheme::without_counter);
    CHECK(id_scheme_for("systemd-boot 260.1") == IdScheme::without_counter);
    CHECK(id_scheme_for("") == IdScheme::with_counter);
    CHECK(loader_entry_id("nixos-generation-5+1-2.conf", IdScheme::with_counter) == "nixos-generation-5+1-2.conf");
    CHECK(loader_entry_id("nixos-generation-5+1-2.conf", IdScheme::without_counter) == "nixos-generation-5.conf");
    CHECK(loader_entry_id("nixos-generation-5-specialisation-Big+3-0.conf", IdScheme::without_counter) ==
          "nixos-generation-5-specialisation-big.conf");
}

TEST_CASE("efi_fnmatch matches like systemd-boot's globs") {
    CHECK(efi_fnmatch("nixos-generation-5.conf", "nixos-generation-5.conf"));
    CHECK_FALSE(efi_fnmatch("nixos-generation-5.conf", "nixos-generation-50.conf"));
    CHECK(efi_fnmatch("nixos-generation-5*", "nixos-generation-50.conf"));  // why nixboot never arms globs
    CHECK(efi_fnmatch("nixos-*", "nixos-generation-1.conf"));
    CHECK(efi_fnmatch("a?c", "abc"));
    CHECK_FALSE(efi_fnmatch("a?c", "ac"));
    CHECK(efi_fnmatch("[a-c]x", "bx"));
    // No negation in systemd-boot's sets: '!' is one more character.
    CHECK(efi_fnmatch("[!a-c]x", "bx"));
    CHECK(efi_fnmatch("[!a-c]x", "!x"));
    CHECK_FALSE(efi_fnmatch("[!a-c]x", "dx"));
    CHECK(efi_fnmatch("[^a]", "^"));
    CHECK(efi_fnmatch("[]a]", "]"));
    CHECK(efi_fnmatch("a\\*", "a*"));
    CHECK_FALSE(efi_fnmatch("a\\*", "ab"));
    CHECK(efi_fnmatch("*", ""));
    CHECK_FALSE(efi_fnmatch("[ab", "a"));
}

TEST_CASE("strverscmp_improved orders versions like systemd") {
    CHECK(strverscmp_improved("Generation 10 NixOS", "Generation 9 NixOS") > 0);
    CHECK(strverscmp_improved("1.2", "1.10") < 0);
    CHECK(strverscmp_improved("123~rc1", "123") < 0);
    CHECK(strverscmp_improved("123-9", "123.1-1") < 0);
    CHECK(strverscmp_improved("abc", "abcde") < 0);
    CHECK(strverscmp_improved("007", "7") == 0);
    CHECK(strverscmp_improved("nixos-generation-5-specialisation-a.conf", "nixos-generation-5.conf") < 0);
    CHECK(strverscmp_improved("", "a") < 0);
}

TEST_CASE("sort order: spent entries last, newest version first, more tries first") {
    auto item = [](std::string name, std::optional<Counter> c, std::string version) {
        SortItem i;
        i.file_name = std::move(name);
        i.counter = c;
        i.sort_key = "nixos";
        i.version = std::move(version);
        return i;
    };
    std::vector<SortItem> items{
        item("nixos-generation-9.conf", std::nullopt, "Generation 9 x"),
        item("nixos-generation-11+0-3.conf", Counter{0, 3}, "Generation 11 x"),
        item("nixos-generation-10+1-0.conf", Counter{1, 0}, "Generation 10 x"),
        item("nixos-generation-10-specialisation-a+1-0.conf", Counter{1, 0}, "Generation 10 x"),
    };
    SortItem foreign;
    foreign.file_name = "zzz.conf";
    items.push_back(foreign);
    sort_like_systemd_boot(items, IdScheme::with_counter);
    std::vector<std::string> names;
    for (const auto& i : items) names.push_back(i.file_name);
    CHECK(names == std::vector<std::string>{"nixos-generation-10+1-0.conf",
                                            "nixos-generation-10-specialisation-a+1-0.conf", "nixos-generation-9.conf",
                                            "zzz.conf", "nixos-generation-11+0-3.conf"});
}

TEST_CASE("default choice: one-shot, EFI default, loader.conf glob, first entry") {
    std::vector<SortItem> sorted(3);
    sorted[0].file_name = "nixos-generation-3+1-0.conf";
    sorted[1].file_name = "nixos-generation-2.conf";
    sorted[2].file_name = "nixos-generation-1.conf";
    DefaultInputs in;
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(0));
    in.conf_default = "nixos-generation-2.conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(1));
    in.efi_default = "nixos-generation-1*";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(2));
    in.one_shot = "nixos-generation-3+1-0.conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(0));
    // the same one-shot under the 258 scheme matches nothing: falls through
    CHECK(pick_default_entry(sorted, in, IdScheme::without_counter) == std::optional<std::size_t>(2));
    in.one_shot = "NIXOS-GENERATION-3.CONF";
    CHECK(pick_default_entry(sorted, in, IdScheme::without_counter) == std::optional<std::size_t>(0));
    CHECK_FALSE(pick_default_entry({}, in, IdScheme::with_counter));
}

TEST_CASE("default choice: @saved is the entry booted last, in the place of the default that says it") {
    std::vector<SortItem> sorted(3);
    sorted[0].file_name = "nixos-generation-3.conf";
    sorted[1].file_name = "nixos-generation-2.conf";
    sorted[2].file_name = "nixos-generation-1.conf";
    DefaultInputs in;
    in.conf_default = "@saved";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(0));
    in.last_booted = "nixos-generation-2.conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(1));
    // The EFI default wins over loader.conf's @saved.
    in.efi_default = "nixos-generation-1.conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(2));
    // The EFI variable's @saved is looked up once: no match, the first entry.
    in.efi_default = "@SAVED";
    in.conf_default = "nixos-generation-1.conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(1));
    in.last_booted = "nixos-generation-9.conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(0));
    // Another special identifier matches nothing.
    in.efi_default.reset();
    in.conf_default = "@other";
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(0));
}

TEST_CASE("loader values: a value in double quotes loses them, as systemd-boot reads it") {
    CHECK(loader_value("\"nixos-*\"") == "nixos-*");
    CHECK(loader_value("nixos-*") == "nixos-*");
    CHECK(loader_value("\"") == "");
    CHECK(loader_value("\"\"") == "");
    CHECK(loader_value("\"a") == "\"a");
    CHECK(loader_value("a \"b\"") == "a \"b\"");
}

TEST_CASE(
    "default choice with preferred (systemd-boot 260+): after the one-shot, before the default, never a bad "
    "entry") {
    std::vector<SortItem> sorted(4);
    sorted[0].file_name = "nixos-generation-4+2-1.conf";
    sorted[0].counter = Counter{2, 1};
    sorted[1].file_name = "nixos-generation-2.conf";
    sorted[2].file_name = "nixos-generation-1.conf";
    sorted[3].file_name = "nixos-generation-3+0-2.conf";
    sorted[3].counter = Counter{0, 2};
    DefaultInputs in;
    in.efi_default = "nixos-generation-2.conf";
    in.efi_preferred = "nixos-generation-4[+.]*conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::without_counter) == std::optional<std::size_t>(0));
    CHECK(pick_default_entry(sorted, in, IdScheme::with_counter) == std::optional<std::size_t>(0));
    // A bad entry is skipped by preferred, but not by the default.
    in.efi_preferred = "nixos-generation-3[+.]*conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::without_counter) == std::optional<std::size_t>(1));
    in.efi_default = "nixos-generation-3*";
    CHECK(pick_default_entry(sorted, in, IdScheme::without_counter) == std::optional<std::size_t>(3));
    // A glob: the first entry in menu order that is not bad; loader.conf's after the variable.
    in.efi_preferred = "nixos-generation-[13]*";
    CHECK(pick_default_entry(sorted, in, IdScheme::without_counter) == std::optional<std::size_t>(2));
    in.efi_preferred.reset();
    in.conf_preferred = "nixos-generation-4*";
    CHECK(pick_default_entry(sorted, in, IdScheme::without_counter) == std::optional<std::size_t>(0));
    in.one_shot = "nixos-generation-1.conf";
    CHECK(pick_default_entry(sorted, in, IdScheme::without_counter) == std::optional<std::size_t>(2));
}

TEST_CASE("content names") {
    CHECK(content_file_name("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "linux") ==
          "EFI/nixos/ba7816bf8f01cfea414140de5dae2223-linux.efi");
}

TEST_CASE("the entry text of a generation and of a specialisation") {
    Generation g;
    g.number = 7;
    g.time = 86400 * 365;
    g.doc.boot.label = "NixOS 24.05 (Linux 6.6.30)";
    g.doc.boot.toplevel = "/nix/store/abc-nixos-system-7";
    g.doc.boot.kernel_params = {"loglevel=4", "quiet"};
    BootSpec spec = g.doc.boot;
    spec.toplevel = "/nix/store/def-nixos-system-7-big";
    spec.sort_key = "big";
    g.doc.specialisations["big"] = spec;
    EntryFiles f{"/EFI/nixos/aa-linux.efi", std::string("/EFI/nixos/bb-initrd.efi")};
    CHECK(format_generation_entry(g, "", f) ==
          "title NixOS\n"
          "version Generation 7 NixOS 24.05 (Linux 6.6.30), Built on 1971-01-01\n"
          "sort-key nixos\n"
          "linux /EFI/nixos/aa-linux.efi\n"
          "initrd /EFI/nixos/bb-initrd.efi\n"
          "options init=/nix/store/abc-nixos-system-7/init loglevel=4 quiet nixboot.entry=nixos-generation-7\n");
    auto s = format_generation_entry(g, "big", EntryFiles{"/EFI/nixos/aa-linux.efi", std::nullopt});
    CHECK(s.find("title NixOS (big)\n") == 0);
    CHECK(s.find("sort-key big\n") != std::string::npos);
    CHECK(s.find("initrd") == std::string::npos);
    CHECK(
        s.find(
            "init=/nix/store/def-nixos-system-7-big/init loglevel=4 quiet nixboot.entry=nixos-generation-7-specialisation-big\n") !=
        std::string::npos);
    CHECK_THROWS_WITH(format_generation_entry(g, "nope", f), "generation 7 has no specialisation 'nope'");
}

TEST_CASE("the backend reads LoaderBootCountPath, and ignores one that is not a counted entry") {
    test::Rig rig(2, "systemd-boot 252.39", 1);
    SdBootBackend be(rig.backend_options());
    Machine m(be, rig.machine_options());
    m.install();
    m.try_generation(2, {});
    rig.boot();
    auto v = be.read();
    CHECK(v.booted == std::optional<std::string>("nixos-generation-2"));
    CHECK(v.booted_file == std::optional<std::string>("loader/entries/nixos-generation-2+0-1.conf"));
    EfiVars(rig.efivars).set_string(efivar_name::loader_boot_count_path, "\\loader\\entries\\..\\x+1-0.conf");
    v = be.read();
    CHECK_FALSE(v.booted_file);
    REQUIRE_FALSE(v.warnings.empty());
    CHECK(v.warnings.back() ==
          "EFI variable LoaderBootCountPath '\\loader\\entries\\..\\x+1-0.conf' does not name a counted entry under "
          "\\loader\\entries\\ (ignored)");
}

TEST_CASE(
    "the backend reads loader.conf as systemd-boot does: quoted values and @saved, beside .CONF and auto- names") {
    test::Rig rig(2, "systemd-boot 252.39", 1);
    SdBootBackend be(rig.backend_options());
    Machine m(be, rig.machine_options());
    m.install();
    EfiVars(rig.efivars).remove(efivar_name::loader_entry_default);
    test::write_file(rig.esp / "loader/loader.conf", "timeout 3\ndefault \"nixos-generation-1*\"\n");
    const std::string foreign = "title Other\nlinux /EFI/nixos/other.efi\n";
    test::write_file(rig.esp / "EFI/nixos/other.efi", "kernel");
    test::write_file(rig.esp / "loader/entries/Other.CONF", foreign);
    test::write_file(rig.esp / "loader/entries/auto-windows.conf", foreign);
    auto v = be.read();
    CHECK(v.persistent_default == std::optional<std::string>("nixos-generation-1"));
    for (const auto& w : v.warnings) {  // shown by the loader and read; auto- names are not read at all
        INFO(w);
        CHECK(w.find("auto-windows") == std::string::npos);
    }
    // Unquoted, the same pattern with its quotes would match nothing.
    test::write_file(rig.esp / "loader/loader.conf", "default \"nixos-generation-1*\"x\n");
    CHECK(be.read().persistent_default != std::optional<std::string>("nixos-generation-1"));
    // @saved: the entry booted last.
    test::write_file(rig.esp / "loader/loader.conf", "default @saved\n");
    EfiVars(rig.efivars).set_string(efivar_name::loader_entry_last_booted, "nixos-generation-1.conf");
    CHECK(be.read().persistent_default == std::optional<std::string>("nixos-generation-1"));
}

TEST_CASE("set_default refuses trial and bad entries, set_state refuses trial") {
    test::Rig rig(2, "systemd-boot 252.39", 1);
    SdBootBackend be(rig.backend_options());
    Machine m(be, rig.machine_options());
    m.install();
    CHECK_THROWS_WITH(be.set_default("nixos-generation-2"),
                      "refusing to make 'nixos-generation-2' the default: it is a trial (nixos-generation-2+1-0.conf)");
    CHECK_THROWS_WITH(be.set_state("nixos-generation-2", EntryState::trial),
                      "set_state: use arm() to make 'nixos-generation-2' a trial");
    CHECK_THROWS_WITH(be.set_default("nixos-generation-9"),
                      "no entry 'nixos-generation-9' in " + (rig.esp / "loader/entries").string());
}

TEST_CASE("held reads: one reading until the backend changes something, then entries are read again by identity") {
    test::Rig rig(2, "systemd-boot 252.39", 1);
    SdBootBackend be(rig.backend_options());
    Machine m(be, rig.machine_options());
    m.install();
    const auto first = rig.esp / "loader/entries/nixos-generation-1.conf";
    const auto text = test::read_file(first);
    const auto retitled = [&](const std::string& title) {
        auto t = text;
        t.replace(t.find("title ") + 6, t.find('\n') - t.find("title ") - 6, title);
        return t;
    };
    {
        const Backend::HeldReads held(be);
        REQUIRE(be.read().find("nixos-generation-2")->state == EntryState::trial);
        // Another writer (there is none under STATE/lock) would go unseen
        // while nothing of the backend's own changes the ESP...
        test::write_file(first, retitled("Edited elsewhere"));
        CHECK(be.read().find("nixos-generation-1")->title != "Edited elsewhere");
        // ...and the backend's own change drops the reading; the entry whose
        // identity changed is read again, the others are taken as read.
        be.set_state("nixos-generation-2", EntryState::good);
        auto v = be.read();
        CHECK(v.find("nixos-generation-2")->state == EntryState::good);
        CHECK(v.find("nixos-generation-1")->title == "Edited elsewhere");
    }
    // Without a holder every read reads.
    test::write_file(first, retitled("Edited once more"));
    CHECK(be.read().find("nixos-generation-1")->title == "Edited once more");
}

// systemd-boot sorts Type #2 UKIs (EFI/Linux on the ESP and on XBOOTLDR) and
// XBOOTLDR's Type #1 entries together with the ESP's own (boot.c,
// config_load_all_entries, 252-262): what nixboot says the loader boots must
// come from the same set.
TEST_CASE("UKIs in EFI/Linux and XBOOTLDR's entries sort with nixboot's, and decide the default as the loader's do") {
    test::Rig rig(1, "systemd-boot 252.39", 1);
    auto opts = rig.backend_options();
    SdBootBackend be(opts);
    Machine m(be, rig.machine_options());
    m.install();
    EfiVars(rig.efivars).remove(efivar_name::loader_entry_default);
    test::write_file(rig.esp / "loader/loader.conf", "timeout 3\n");
    REQUIRE(be.read().persistent_default == std::optional<std::string>("nixos-generation-1"));

    // A UKI whose sort key ("arch") sorts before "nixos" is the first entry.
    test::write_file(rig.esp / "EFI/Linux/arch-linux.efi", test::make_uki({{".osrel", "ID=arch\nPRETTY_NAME=Arch\n"}}));
    auto v = be.read();
    CHECK(v.persistent_default == std::optional<std::string>("arch-linux"));
    // Each profile is an entry of its own; "@rescue" sorts before the plain
    // ID (IDs descending), as in the loader's menu.
    test::write_file(
        rig.esp / "EFI/Linux/arch-linux.efi",
        test::make_uki(
            {{".osrel", "ID=arch\n"}, {".cmdline", "quiet"}, {".profile", "ID=main\n"}, {".profile", "ID=rescue\n"}}));
    CHECK(be.read().persistent_default == std::optional<std::string>("arch-linux@rescue"));
    // ... unless it is hidden, auto-*, not .efi, or not a PE image (reported).
    std::filesystem::rename(rig.esp / "EFI/Linux/arch-linux.efi", rig.esp / "EFI/Linux/auto-arch.efi");
    CHECK(be.read().persistent_default == std::optional<std::string>("nixos-generation-1"));
    test::write_file(rig.esp / "EFI/Linux/broken.EFI", "not a PE image");
    v = be.read();
    CHECK(v.persistent_default == std::optional<std::string>("nixos-generation-1"));
    CHECK(std::count_if(v.warnings.begin(), v.warnings.end(), [](const std::string& w) {
              return w.find("broken.EFI: not a PE image (no MZ header) (the loader skips it)") != std::string::npos;
          }) == 1);

    // The XBOOTLDR partition's entries: one whose kernel is there sorts in; one
    // whose kernel is missing is skipped, as the loader skips it.
    test::TempDir xbootldr;
    test::write_file(xbootldr / "loader/entries/alpine.conf", "title Alpine\nsort-key alpine\nlinux /vmlinuz-lts\n");
    opts.xbootldr = xbootldr.path();
    SdBootBackend with_xbootldr(opts);
    v = with_xbootldr.read();
    CHECK(v.persistent_default == std::optional<std::string>("nixos-generation-1"));
    CHECK(std::count_if(v.warnings.begin(), v.warnings.end(), [](const std::string& w) {
              return w.find("alpine.conf: its kernel '/vmlinuz-lts' is missing, so the loader skips it") !=
                     std::string::npos;
          }) == 1);
    test::write_file(xbootldr / "vmlinuz-lts", "kernel");
    CHECK(with_xbootldr.read().persistent_default == std::optional<std::string>("alpine"));
    // A UKI there counts too, and nixboot's own entries are still what it lists.
    test::write_file(xbootldr / "EFI/Linux/aaa.efi", test::make_uki({{".osrel", "ID=aaa\n"}}));
    v = with_xbootldr.read();
    CHECK(v.persistent_default == std::optional<std::string>("aaa"));
    CHECK(v.entries.size() == 1);
}

TEST_CASE("the ESP named as XBOOTLDR too is read once: a trial is armed as without it") {
    test::Rig rig(2, "systemd-boot 252.39", 1);
    auto opts = rig.backend_options();
    opts.xbootldr = rig.esp;
    SdBootBackend be(opts);
    Machine m(be, rig.machine_options());
    m.install();
    // Read twice, nixboot's own trial entry would also be "another" entry the
    // one-shot selects, and arming would be refused.
    CHECK(m.try_generation(2, {}).mode == ArmMode::one_shot);
}

TEST_CASE("a UKI that sorts first stops a trial armed by sort order, and a one-shot that would select it") {
    test::Rig rig(2, "", 1);
    std::filesystem::remove_all(rig.efivars);  // no EFI variables: the trial is armed by sort order
    SdBootBackend be(rig.backend_options());
    Machine m(be, rig.machine_options());
    m.install();
    test::write_file(rig.esp / "EFI/Linux/arch.efi", test::make_uki({{".osrel", "ID=arch\n"}}));
    auto before = rig.snapshot();
    CHECK_THROWS_WITH(m.try_generation(2, {}),
                      "cannot arm 'nixos-generation-2' without writable EFI variables: good "
                      "entry 'arch.efi' in " +
                          (rig.esp / "EFI/Linux").string() +
                          " sorts before it, so the loader would not boot the trial");
    CHECK(rig.snapshot() == before);
}
