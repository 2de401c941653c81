# nixboot without flakes.
#
#   nix-build -A package                      # the package
#   nix-build -A tests.systemd-boot-healthy   # one NixOS VM test (KVM recommended)
#
# In configuration.nix:
#   imports = [ "${builtins.fetchTarball "https://…/nixboot.tar.gz"}/nixos/module.nix" ];
#   boot.loader.nixboot.enable = true;
{
  pkgs ? import <nixpkgs> { },
}:

{
  package = pkgs.callPackage ./nixos/package.nix { };
  module = ./nixos/module.nix;
  overlay = import ./nixos/overlay.nix;
  tests = import ./vm-tests/nixos { inherit pkgs; };
}
