# Evaluates vm-tests/nixos/ without nixpkgs: pkgs.testers.runNixOSTest is
# replaced by a function that returns its argument, so tests/nixos/run can
# check each test's Python script (py_compile) and evaluate its machine —
# generation 1 and every specialisation — against nixos/module.nix and the
# stubs (the VM-only options get declarations of their own here).
{ nixpkgsLib }:

let
  lib = import nixpkgsLib;
  pkgs = import ./stub-pkgs.nix {
    inherit lib;
    storeRoot = "/nix/store/00000000000000000000000000000000";
  } // {
    testers.runNixOSTest = test: test;
  };
  tests = import ../../vm-tests/nixos { inherit pkgs; };

  vmOptions =
    { lib, ... }:
    {
      options = {
        virtualisation = lib.mkOption {
          type = lib.types.attrsOf lib.types.anything;
          default = { };
        };
        # As in nixpkgs: the configuration is a module, merged into the
        # parent's (inheritParentConfig) when the specialisation is built.
        specialisation = lib.mkOption {
          type = lib.types.attrsOf (
            lib.types.submodule {
              options.configuration = lib.mkOption {
                type = lib.types.deferredModule;
                default = { };
              };
              options.inheritParentConfig = lib.mkOption {
                type = lib.types.bool;
                default = true;
              };
            }
          );
          default = { };
        };
        boot.initrd.kernelModules = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          default = [ ];
        };
      };
    };

  evalMachine =
    modules:
    let
      e = lib.evalModules {
        modules = [
          ./stubs.nix
          vmOptions
        ] ++ modules;
        specialArgs = { inherit pkgs; };
      };
    in
    {
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) e.config.assertions);
      nixboot = {
        inherit (e.config.boot.loader.nixboot) bootloader autoTry panicTimeout;
        checks = builtins.attrNames e.config.boot.loader.nixboot.checks;
      };
      kernelParams = e.config.boot.kernelParams;
      specialisations = builtins.attrNames e.config.specialisation;
      etcGeneration = e.config.environment.etc."nixboot-test/generation".text or null;
      # The stub declares the etc text; pick it up for the specialisations too.
      config = e.config;
    };

  describe =
    name: t:
    let
      base = evalMachine [ t.nodes.machine ];
    in
    {
      inherit (t) name;
      testScript = t.testScript;
      machine = removeAttrs base [ "config" ];
      specialisations = lib.mapAttrs (
        _: s: removeAttrs (evalMachine [ t.nodes.machine s.configuration ]) [ "config" ]
      ) base.config.specialisation;
    };
in
lib.mapAttrs describe tests
