#include "boot/grub/consume.hpp"

#include "boot/grub/grub_test_support.hpp"
#include "boot/grub/grubenv.hpp"
#include "boot/util/error.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::grub;
using nixboot::grub::test::slurp;
using nixboot::grub::test::spit;
using nixboot::grub::test::TempDir;

TEST_CASE("consume: stage 1 lowers the armed trial's tries once", "[grub][consume][real]") {
    TempDir tmp;
    const auto file = tmp / "grubenv";
    CHECK(consume_try_in_userspace(file, "nixos-generation-3", 1) == ConsumeResult::not_armed);
    GrubEnv env;
    env.set("saved_entry", "keep me");
    env.set("nixboot_trial", "nixos-generation-3");
    env.set("nixboot_tries", "2");
    spit(file, format_grubenv(env));

    CHECK(consume_try_in_userspace(file, "nixos-generation-30", 1) == ConsumeResult::not_armed);
    CHECK(consume_try_in_userspace(file, "nixos-generation-3", 1) == ConsumeResult::consumed);
    auto back = parse_grubenv(slurp(file), "x");
    CHECK(back.get("nixboot_tries") == "1");
    CHECK(back.get("saved_entry") == "keep me");
    CHECK(consume_try_in_userspace(file, "nixos-generation-3", 1) == ConsumeResult::already_consumed);
    CHECK(consume_try_in_userspace(file, "nixos-generation-3", 0) == ConsumeResult::consumed);
    CHECK(parse_grubenv(slurp(file), "x").get("nixboot_tries") == "0");

    // Garbage tries are replaced by what GRUB said is left.
    env.set("nixboot_tries", "lots");
    spit(file, format_grubenv(env));
    CHECK(consume_try_in_userspace(file, "nixos-generation-3", 0) == ConsumeResult::consumed);
    CHECK(parse_grubenv(slurp(file), "x").get("nixboot_tries") == "0");
}

TEST_CASE("consume: a broken env block is refused, not rewritten", "[grub][consume]") {
    TempDir tmp;
    const auto file = tmp / "grubenv";
    spit(file, std::string(1024, '#'));
    CHECK_THROWS_WITH(consume_try_in_userspace(file, "nixos-generation-3", 0),
                      file.string() + ": does not start with the header '# GRUB Environment Block'");
    CHECK(slurp(file) == std::string(1024, '#'));
}
