// The GRUB state copies (boot/grub/state.*): the JSON record round-trips, a
// slot written from it reads back with its sequence number, and a copy read
// from disk as it is (a torn or foreign one) is refused with ParseError only.
#include "boot/grub/state.hpp"
#include "boot/util/error.hpp"
#include "fuzz/fuzz.hpp"

#include <string>

using namespace nixboot;
using namespace nixboot::grub;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = fuzz::text(data, size);
    try {
        const StateSlot slot = parse_state_slot(text, "nixboot-state.a");
        const std::string again = format_state_slot(slot.state, slot.seq, text.size());
        FUZZ_CHECK(parse_state_slot(again, "formatted").state == slot.state);
    } catch (const ParseError&) {}

    GrubState state;
    try {
        state = parse_state(text, "state");
    } catch (const ParseError&) {
        return 0;
    }
    const std::string formatted = format_state(state);
    FUZZ_CHECK(parse_state(formatted, "formatted") == state);
    FUZZ_CHECK(format_state(parse_state(formatted, "formatted")) == formatted);
    for (std::size_t room : {std::size_t{0}, formatted.size() + 100, std::size_t{4096}}) {
        const std::string copy = format_state_slot(state, 7, room);
        FUZZ_CHECK(copy.size() >= formatted.size());
        if (room >= copy.size()) FUZZ_CHECK(copy.size() == room);
        const StateSlot slot = parse_state_slot(copy, "formatted");
        FUZZ_CHECK(slot.seq == 7);
        FUZZ_CHECK(slot.state == state);
    }
    return 0;
}
