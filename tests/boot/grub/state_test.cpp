#include "boot/grub/state.hpp"

#include "boot/util/error.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::grub;

namespace {
GrubState sample() {
    GrubState s;
    EntryRecord a;
    a.id = "nixos-generation-7";
    a.generation = 7;
    a.state = EntryState::trial;
    a.tries = 3;
    a.title = "NixOS - Configuration 7 (2024-05-01 - 24.05 \"q\" \\ ü)";
    a.version = "24.05";
    a.kernel = "kernels/abc-linux";
    a.initrd = "kernels/def-initrd";
    a.params = {"init=/nix/store/x/init", "a=\"b c\"", "x'y"};
    EntryRecord b = a;
    b.id = "nixos-generation-7-specialisation-fast";
    b.specialisation = "fast";
    b.state = EntryState::bad;
    b.tries = 0;
    b.initrd = "";
    EntryRecord c = a;
    c.id = "nixos-generation-6";
    c.generation = 6;
    c.state = EntryState::good;
    c.tries = 0;
    s.entries = {c, b, a};
    sort_entries(s.entries);
    s.default_id = "nixos-generation-6";
    s.trial_id = "nixos-generation-7";
    s.copies["/nix/store/k/bzImage"] = {"kernels/abc-linux", 10, 20, 30};
    return s;
}

std::string error_of(std::string_view text) {
    try {
        parse_state(text, "/boot/grub/nixboot-state.a");
    } catch (const ParseError& e) {
        return e.what();
    }
    return "(no error)";
}
}  // namespace

TEST_CASE("grub state: format then parse is the identity", "[grub][state]") {
    const GrubState s = sample();
    CHECK(s.entries[0].id == "nixos-generation-7");
    CHECK(s.entries[1].id == "nixos-generation-7-specialisation-fast");
    CHECK(s.entries[2].id == "nixos-generation-6");
    const std::string text = format_state(s);
    CHECK(parse_state(text, "x") == s);
    CHECK(format_state(parse_state(text, "x")) == text);
    GrubState empty;
    CHECK(parse_state(format_state(empty), "x") == empty);
}

TEST_CASE("grub state: bad files are refused with the reason", "[grub][state]") {
    CHECK(error_of("").starts_with("/boot/grub/nixboot-state.a: not JSON: "));
    CHECK(error_of("[]") == "/boot/grub/nixboot-state.a: not a JSON object");
    CHECK(error_of(R"({"format":"other","entries":[]})") ==
          "/boot/grub/nixboot-state.a: \"format\" is not \"nixboot-grub-state-1\"");
    CHECK(error_of(R"({"format":"nixboot-grub-state-1"})") == "/boot/grub/nixboot-state.a: missing \"entries\"");
    const std::string entry =
        R"({"id":"nixos-generation-1","state":"good","tries":0,"title":"t","version":"v","kernel":"kernels/k","initrd":"","params":[]})";
    CHECK(error_of(R"({"format":"nixboot-grub-state-1","entries":[)" + entry + "," + entry + "]}") ==
          "/boot/grub/nixboot-state.a: entry 1: duplicate entry 'nixos-generation-1'");
    std::string bad_state = entry;
    bad_state.replace(bad_state.find("good"), 4, "meh");
    CHECK(error_of(R"({"format":"nixboot-grub-state-1","entries":[)" + bad_state + "]}") ==
          "/boot/grub/nixboot-state.a: entry 0: unknown state 'meh'");
    std::string bad_id = entry;
    bad_id.replace(bad_id.find("nixos-generation-1"), 18, "../../etc/passwd");
    CHECK(error_of(R"({"format":"nixboot-grub-state-1","entries":[)" + bad_id + "]}") ==
          "/boot/grub/nixboot-state.a: entry 0: '../../etc/passwd' is not an entry ID");
    std::string escape = entry;
    escape.replace(escape.find("kernels/k"), 9, "kernels/../../vmlinuz");
    CHECK(error_of(R"({"format":"nixboot-grub-state-1","entries":[)" + escape + "]}") ==
          "/boot/grub/nixboot-state.a: entry 0: 'kernels/../../vmlinuz' is not a file under kernels/");
    std::string neg = entry;
    neg.replace(neg.find("\"tries\":0"), 9, "\"tries\":-1");
    CHECK(error_of(R"({"format":"nixboot-grub-state-1","entries":[)" + neg + "]}") ==
          "/boot/grub/nixboot-state.a: entry 0: \"tries\" is not a non-negative integer");
}

TEST_CASE("grub state: a copy is header + JSON + padding, checked by its SHA-256", "[grub][state]") {
    const GrubState s = sample();
    const std::string slot = format_state_slot(s, 41);
    CHECK(slot.starts_with("nixboot-grub-state-slot 1 seq=41 length="));
    CHECK(slot.size() % 4096 == 0);
    CHECK(slot.size() >= format_state(s).size() + 2048);
    const StateSlot back = parse_state_slot(slot, "a");
    CHECK(back.seq == 41);
    CHECK(back.state == s);
    // The same size when it fits, so the next write of this copy is in place.
    CHECK(format_state_slot(s, 42, slot.size()).size() == slot.size());
    CHECK(format_state_slot(s, 42, 100).size() == slot.size());

    auto error = [](const std::string& text) {
        try {
            parse_state_slot(text, "/boot/grub/nixboot-state.b");
        } catch (const ParseError& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    // A torn in-place write: the first sectors new, the rest old (or zeros).
    std::string torn = slot;
    const std::string older = format_state_slot(GrubState{}, 40, slot.size());
    torn.replace(512, torn.size() - 512, older.substr(512));
    CHECK(error(torn) == "/boot/grub/nixboot-state.b: torn write (checksum mismatch)");
    std::string flipped = slot;
    flipped[flipped.find("nixos-generation-6")] = 'N';
    CHECK(error(flipped) == "/boot/grub/nixboot-state.b: torn write (checksum mismatch)");
    CHECK(error(std::string(4096, '\0')) == "/boot/grub/nixboot-state.b: no header line");
    CHECK(error("nixboot-grub-state-slot 12 seq=1\n") ==
          "/boot/grub/nixboot-state.b: does not start with \"nixboot-grub-state-slot 1\"");
    CHECK(error("nixboot-grub-state-slot 1 seq=1 length=2\n{}") ==
          "/boot/grub/nixboot-state.b: header lacks seq=, length= or sha256=");
    CHECK(error("nixboot-grub-state-slot 1 seq=1 length=999 sha256=00\n{}") ==
          "/boot/grub/nixboot-state.b: torn or truncated (length=999, 2 bytes follow the header)");
}
