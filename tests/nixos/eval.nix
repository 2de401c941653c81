# Evaluates nixos/module.nix for one case of cases.nix with nixpkgs' lib and
# the stubs, and returns what tests/nixos/run checks, as plain data:
#   nix-instantiate --eval --strict --json tests/nixos/eval.nix \
#     --arg nixpkgsLib /path/to/nixpkgs.lib/lib --argstr case defaults --argstr storeRoot /tmp/x
{
  nixpkgsLib,
  case,
  storeRoot ? "/nix/store",
  # More configuration on top of the case (tests/nixos/run points the ESP,
  # profile and state at a temporary directory with it).
  extraConfig ? { },
}:

let
  lib = import nixpkgsLib;
  pkgs = import ./stub-pkgs.nix { inherit lib storeRoot; };
  c = (import ./cases.nix).${case};

  evaluated = lib.evalModules {
    modules = [
      ../../nixos/module.nix
      ./stubs.nix
      c.config
      # Wins over the case (a temporary ESP replaces the case's).
      { config = lib.mkOverride 10 extraConfig; }
    ];
    specialArgs = { inherit pkgs; };
  };
  config = evaluated.config;
  cfg = config.boot.loader.nixboot;

  # Every file the module writes through the stub pkgs, by store path.
  # null when no bootloader module set it (the module is disabled).
  installBootLoader =
    let
      r = builtins.tryEval config.system.build.installBootLoader;
    in
    if r.success then r.value else null;

  files = lib.unique (
    lib.filter (f: f != null) (
      [ installBootLoader ]
      ++ lib.mapAttrsToList (_: e: e.source) config.environment.etc
    )
  );
  fileData = f: {
    path = toString f;
    inherit (f) text executable;
  };

  # The package, evaluated with the stub callPackage (its arguments and
  # attributes must exist and have the right shape).
  package = (pkgs.callPackage ../../nixos/package.nix { }).attrs;
in
{
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  inherit (config) warnings;
  enabled = cfg.enable;
  conf =
    if config.environment.etc ? "nixboot/nixboot.conf" then
      config.environment.etc."nixboot/nixboot.conf".source.text
    else
      null;
  etc = lib.mapAttrs (_: e: {
    source = toString e.source;
    inherit (e) mode;
  }) config.environment.etc;
  files = map fileData files;
  installBootLoader = if installBootLoader == null then null else toString installBootLoader;
  kernelParams = config.boot.kernelParams;
  initrd = {
    inherit (config.boot.initrd)
      availableKernelModules
      extraUtilsCommands
      extraUtilsCommandsTest
      postDeviceCommands
      ;
    systemdServices = config.boot.initrd.systemd.services;
    extraFiles = lib.mapAttrs (_: f: toString f.source) config.boot.initrd.extraFiles;
    systemdContents = lib.mapAttrs (_: f: toString f.source) config.boot.initrd.systemd.contents;
    systemdStorePaths = config.boot.initrd.systemd.storePaths;
  };
  stockGrub = config.boot.loader.grub.enable;
  loaderId = config.system.boot.loader.id;
  systemdPackages = map toString config.systemd.packages;
  systemdServices = config.systemd.services;
  tmpfiles = config.systemd.tmpfiles.rules;
  package = {
    name = "${package.pname}-${package.version}";
    inherit (package) doCheck checkPhase postInstall;
    nativeBuildInputs = map (p: p.name) package.nativeBuildInputs;
    buildInputs = map (p: p.name) package.buildInputs;
    checkInputs = map (p: p.name) package.checkInputs;
  };
}
