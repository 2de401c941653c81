// nixboot-stage1: the initrd hook (run on every boot, before switch_root) and
// the watchdog feeder (run early by nixboot-watchdog.service).
//
//   nixboot-stage1 [run]   detect the boot, record it in RUN/nixboot/boot, arm
//                          the watchdog on a trial boot and hand it over running;
//                          only in the initrd (ROOT/etc/initrd-release exists)
//   nixboot-stage1 feed    keep the armed watchdog fed until the verdict
//   nixboot-stage1 --help  usage, nothing else (an unknown argument: usage, exit 2)
//
// It never stops a boot: a hard time bound (alarm) armed before anything else,
// every problem exactly one line on /dev/kmsg, exit status 0 once it runs. Paths are injectable for tests:
// NIXBOOT_STAGE1_ROOT prefixes every default path, and the options below set
// one path each. Static and small: only the pure parts of the library
// (cmdline, counter, detection, record, watchdog, UTF-16) are linked.
#include "stage1-hook/hook.hpp"

int main(int argc, char** argv) { return nixboot::stage1::main(argc, argv); }
