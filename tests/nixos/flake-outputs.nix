# Evaluates the top-level flake.nix's outputs function and default.nix with
# nixpkgs' lib and the stub pkgs (runNixOSTest returns its argument), so
# tests/nixos/run can check the output names without fetching nixpkgs.
{ nixpkgsLib }:

let
  lib = import nixpkgsLib;
  stubPkgs =
    import ./stub-pkgs.nix {
      inherit lib;
      storeRoot = "/nix/store/00000000000000000000000000000000";
    }
    // {
      testers.runNixOSTest = test: test;
      nixfmt-rfc-style = {
        type = "derivation";
        name = "nixfmt";
        outPath = "/nix/store/00000000000000000000000000000000/nixfmt";
      };
    };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: stubPkgs);
  };
  flake = import ../../flake.nix;
  outputs = flake.outputs {
    self = outputs;
    inherit nixpkgs;
  };
  plain = import ../../default.nix { pkgs = stubPkgs; };
  overlaid = outputs.overlays.default stubPkgs stubPkgs;
in
{
  inputs = builtins.attrNames flake.inputs;
  outputs = builtins.attrNames outputs;
  packages = lib.mapAttrs (_: builtins.attrNames) outputs.packages;
  packageName = outputs.packages.x86_64-linux.default.name;
  nixosModules = builtins.attrNames outputs.nixosModules;
  moduleIsFile = toString outputs.nixosModules.default == toString ../../nixos/module.nix;
  checks = lib.mapAttrs (_: builtins.attrNames) outputs.checks;
  overlay = builtins.attrNames overlaid;
  defaultNix = builtins.attrNames plain;
  defaultNixTests = builtins.attrNames plain.tests;
}
