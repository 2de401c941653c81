#include "boot/grub/linux_args.hpp"

#include "tests/catch.hpp"

using namespace nixboot;
using namespace nixboot::grub;

namespace {

GrubLinuxArgs args_for(std::vector<std::string> params) { return grub_linux_args(params); }

GrubLinuxArgs passed(std::vector<std::string> args) { return {std::move(args), {}}; }

// The kernel command line GRUB makes of `args` (grub_create_loader_cmdline
// joins the words with single spaces), and the one systemd-boot makes of
// `params` (its options line: the elements joined by spaces).
std::string grub_line(const std::vector<std::string>& args) {
    std::string out;
    for (const auto& a : args) out += (out.empty() ? "" : " ") + grub_cmdline_word(a);
    return out;
}
std::string sdboot_line(const std::vector<std::string>& params) {
    std::string out;
    for (const auto& p : params) out += (out.empty() ? "" : " ") + p;
    return out;
}

}  // namespace

TEST_CASE("grub linux args: GRUB's own quoting (grub-core/lib/cmdline.c)", "[grub][linux_args]") {
    CHECK(grub_cmdline_word("quiet") == "quiet");
    CHECK(grub_cmdline_word("acpi_osi=!Windows 2020") == "\"acpi_osi=!Windows 2020\"");
    CHECK(grub_cmdline_word("acpi_osi=\"!Windows 2020\"") == "\"acpi_osi=\\\"!Windows 2020\\\"\"");
    CHECK(grub_cmdline_word("it's") == "it\\'s");
    CHECK(grub_cmdline_word("C:\\x41") == "C:\\\\x41");
    CHECK(grub_cmdline_word("$root;{}") == "$root;{}");
    CHECK(grub_cmdline_word("") == "");
}

TEST_CASE("grub linux args: what the old writer did is what the issue saw", "[grub][linux_args]") {
    // The bootspec string passed to GRUB unchanged: GRUB's escaping splits it
    // and leaves backslashes in the value.
    const auto mangled = split_linux_cmdline(grub_cmdline_word("acpi_osi=\"!Windows 2020\""));
    REQUIRE(mangled.params.size() == 2);
    CHECK(mangled.params[0] == LinuxParam{"acpi_osi", "\\\"!Windows"});
}

TEST_CASE("grub linux args: plain parameters pass unchanged", "[grub][linux_args]") {
    CHECK(args_for({"init=/nix/store/abc-nixos-system/init", "quiet", "loglevel=4", "x="}) ==
          passed({"init=/nix/store/abc-nixos-system/init", "quiet", "loglevel=4", "x="}));
}

TEST_CASE("grub linux args: quoted values lose the quotes GRUB puts back", "[grub][linux_args]") {
    CHECK(args_for({"acpi_osi=!Linux", "acpi_osi=\"!Windows 2020\""}) ==
          passed({"acpi_osi=!Linux", "acpi_osi=!Windows 2020"}));
    CHECK(args_for({"\"dyndbg=file drivers/usb/core/hub.c +p\""}) == passed({"dyndbg=file drivers/usb/core/hub.c +p"}));
    CHECK(args_for({"x=\"\"", "\"a b\""}) == passed({"x=", "a b"}));
    // One element holding two parameters gives two arguments, as the kernel reads it.
    CHECK(args_for({"console=ttyS0 console=tty0"}) == passed({"console=ttyS0", "console=tty0"}));
}

TEST_CASE("grub linux args: GRUB script metacharacters are the script quoting's job", "[grub][linux_args]") {
    // grub_quote single-quotes every argument in grub.cfg; here they are plain bytes.
    CHECK(args_for({"memmap=128M$1G", "$root", "${prefix}", "a;b", "{", "}", "#x", "*?"}) ==
          passed({"memmap=128M$1G", "$root", "${prefix}", "a;b", "{", "}", "#x", "*?"}));
}

TEST_CASE("grub linux args: what GRUB cannot pass is left out, with the reason", "[grub][linux_args]") {
    const std::string quote_reason = "GRUB writes its \" as \\\" and the kernel keeps the backslash";
    CHECK(args_for({"quiet", "foo=say\"hi\"", "loglevel=4"}) ==
          GrubLinuxArgs{{"quiet", "loglevel=4"}, {{"foo=say\"hi\"", quote_reason}}});
    CHECK(args_for({"foo=\"a b\"c"}) == GrubLinuxArgs{{}, {{"foo=\"a b\"c", quote_reason}}});
    CHECK(args_for({"systemd.setenv=A='b'"}) ==
          GrubLinuxArgs{{}, {{"systemd.setenv=A='b'", "GRUB writes its ' as \\' and the kernel keeps the backslash"}}});
    CHECK(args_for({"path=C:\\boot"}) ==
          GrubLinuxArgs{{}, {{"path=C:\\boot", "GRUB writes its \\ as \\\\ and the kernel keeps the backslash"}}});
    CHECK(args_for({"foo=\"bar"}) ==
          GrubLinuxArgs{{},
                        {{"foo=\"bar",
                          "it ends inside double quotes (systemd-boot's kernel would read the parameters "
                          "after it as part of its value)"}}});
    CHECK(args_for({"\"\""}) ==
          GrubLinuxArgs{{}, {{"\"\"", "it is an empty parameter, which GRUB passes as nothing"}}});
    // 0xa0 splits for the kernel; GRUB quotes a value only when it has a space.
    CHECK(args_for({"x=\"a\xa0"
                    "b\""}) ==
          GrubLinuxArgs{{},
                        {{"x=\"a\xa0"
                          "b\"",
                          "its byte 0xa0 separates parameters for the kernel, and GRUB quotes only arguments with a "
                          "space"}}});
    CHECK(args_for({"x=\"a\xa0 b\""}) == passed({"x=a\xa0 b"}));
    // One bad parameter in an element leaves the whole element out.
    CHECK(args_for({"a=1 b=x\"y\""}).args.empty());
}

TEST_CASE("grub linux args: the kernel reads GRUB's line as systemd-boot's", "[grub][linux_args]") {
    const std::vector<std::vector<std::string>> cases = {
        {"init=/nix/store/x/init", "quiet", "acpi_osi=!", "acpi_osi=\"!Windows 2020\"", "splash"},
        {"\"dyndbg=file a.c +p\"", "x=\"\"", "a=b=c", "=x", "console=ttyS0,115200n8 console=tty0"},
        {"memmap=128M$1G", "a;b", "x=\" leading and trailing \"", "\"spaced name\"", "\"k=v w\""},
        {"  padded  ", "m=\"a  b\""},
    };
    for (const auto& params : cases) {
        const auto got = grub_linux_args(params);
        INFO("systemd-boot: " << sdboot_line(params) << "\nGRUB:         " << grub_line(got.args));
        CHECK(got.unpassable.empty());
        CHECK(split_linux_cmdline(grub_line(got.args)) == split_linux_cmdline(sdboot_line(params)));
    }
}
