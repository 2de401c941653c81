#include "boot/linux_cmdline.hpp"

#include "tests/catch.hpp"

#include <sstream>

using namespace nixboot;

namespace {

// "name" or "name=value", each in [], for readable failures.
std::string show(const LinuxCmdline& c) {
    std::ostringstream out;
    for (const auto& p : c.params) out << '[' << p.name << (p.value ? "=" + *p.value : "") << ']';
    if (c.open_quote) out << " (open quote)";
    return out.str();
}

LinuxParam flag(std::string name) { return {std::move(name), std::nullopt}; }
LinuxParam kv(std::string name, std::string value) { return {std::move(name), std::move(value)}; }

void check_split(std::string_view text, std::vector<LinuxParam> params, bool open_quote = false) {
    const LinuxCmdline got = split_linux_cmdline(text);
    const LinuxCmdline want{std::move(params), open_quote};
    INFO("text: " << text << "\ngot:  " << show(got) << "\nwant: " << show(want));
    CHECK(got == want);
}

}  // namespace

TEST_CASE("linux cmdline: plain parameters", "[linux_cmdline]") {
    check_split("", {});
    check_split("   ", {});
    check_split("quiet loglevel=4  root=LABEL=nixos x=",
                {flag("quiet"), kv("loglevel", "4"), kv("root", "LABEL=nixos"), kv("x", "")});
    check_split("\t a \n b\r\v\f", {flag("a"), flag("b")});
    // The kernel's isspace counts the Latin-1 no-break space 0xa0.
    check_split(
        "x=a\xa0"
        "b",
        {kv("x", "a"), flag("b")});
}

TEST_CASE("linux cmdline: double quotes group and the outer ones are dropped", "[linux_cmdline]") {
    check_split("acpi_osi=\"!Windows 2020\" quiet", {kv("acpi_osi", "!Windows 2020"), flag("quiet")});
    check_split("\"acpi_osi=!Windows 2020\"", {kv("acpi_osi", "!Windows 2020")});
    check_split("\"a b\"", {flag("a b")});
    check_split("x=\"\"", {kv("x", "")});
    check_split("\"\"", {flag("")});
}

TEST_CASE("linux cmdline: quotes anywhere else stay in the name or value", "[linux_cmdline]") {
    check_split("foo=\"a b\"c", {kv("foo", "a b\"c")});
    check_split("foo=say\"hi\"", {kv("foo", "say\"hi\"")});
    check_split("\"foo\"=bar", {kv("foo\"", "bar")});
    check_split("a\"b c\"d", {flag("a\"b c\"d")});
    // No escape character: a backslash is a byte like any other.
    check_split("x=a\\\"b c\"", {kv("x", "a\\\"b c\"")});
    check_split("path=C:\\boot", {kv("path", "C:\\boot")});
}

TEST_CASE("linux cmdline: the kernel's '=' rules", "[linux_cmdline]") {
    check_split("a=b=c", {kv("a", "b=c")});
    // An '=' at the very start does not split (next_arg's "equals == 0").
    check_split("=x", {flag("=x")});
    check_split("=a=b", {kv("=a", "b")});
}

TEST_CASE("linux cmdline: an open quote swallows the rest", "[linux_cmdline]") {
    check_split("foo=\"bar baz quiet", {kv("foo", "bar baz quiet")}, true);
    check_split("a \"b c", {flag("a"), flag("b c")}, true);
    check_split("\"", {flag("")}, true);
    // A NUL ends the command line, as it ends the kernel's C string.
    check_split(std::string_view("a\0b", 3), {flag("a")});
}
