# The NixOS VM tests of nixboot (flake: checks.x86_64-linux.*; without
# flakes: nix-build -A tests.NAME from the top-level default.nix). Each boots
# real OVMF, real systemd-boot or GRUB, a real NixOS with the module.
#   nix build .#checks.x86_64-linux.systemd-boot-healthy -L
{
  pkgs ? import <nixpkgs> { },
}:

let
  inherit (pkgs) lib;
  makeTest = args: import ./make-test.nix ({ inherit pkgs; } // args);
  scenarios = [
    "healthy"
    "panic"
    "failing-check"
    "live"
  ];
  bootloaders = [
    "systemd-boot"
    "grub"
  ];
in
lib.listToAttrs (
  lib.concatMap (
    bootloader:
    map (
      scenario: lib.nameValuePair "${bootloader}-${scenario}" (makeTest { inherit bootloader scenario; })
    ) scenarios
  ) bootloaders
)
// {
  # The same healthy trial with the systemd-based initrd (the early hook as
  # boot.initrd.systemd.services.nixboot-stage1).
  systemd-boot-healthy-systemd-initrd = makeTest {
    bootloader = "systemd-boot";
    scenario = "healthy";
    systemdInitrd = true;
  };
}
