# A stand-in for `pkgs` with just what nixos/module.nix and
# nixos/package.nix call. Every derivation is an attribute set with
# `type = "derivation"` and an outPath under `storeRoot`; files written with
# writeText/writeShellScript keep their text so tests can inspect (and
# materialise) them.
{ lib, storeRoot }:

let
  drv = name: extra: {
    type = "derivation";
    inherit name;
    outPath = "${storeRoot}/${name}";
  } // extra;

  self = {
    inherit lib;
    writeText = name: text: drv name { inherit text; executable = false; };
    writeShellScript = name: text: drv name {
      text = "#!/bin/sh\n" + text;
      executable = true;
    };
    runtimeShell = "/bin/sh";


    coreutils = drv "coreutils" { };
    efibootmgr = drv "efibootmgr" { };
    grub2 = drv "grub2" { };
    grub2_efi = drv "grub2-efi" { };
    systemd = drv "systemd" { };
    nixboot = drv "nixboot" { };

    # Enough of callPackage/mkDerivation to evaluate nixos/package.nix.
    callPackage =
      f: overrides:
      let
        fn = if builtins.isFunction f then f else import f;
        args = builtins.intersectAttrs (builtins.functionArgs fn) (self // packageInputs) // overrides;
      in
      fn args;
    stdenv = {
      hostPlatform.system = "x86_64-linux";
      mkDerivation =
        f:
        let
          attrs = if builtins.isFunction f then f attrs else f;
        in
        drv "${attrs.pname}-${attrs.version}" { inherit attrs; };
    };
  };

  packageInputs = {
    cmake = drv "cmake" { };
    pkg-config = drv "pkg-config" { };
    help2man = drv "help2man" { };
    efivar = drv "efivar" { };
    libmd = drv "libmd" { };
    boost = drv "boost" { };
    spdlog = drv "spdlog" { };
    catch2_3 = drv "catch2" { };
    nlohmann_json = drv "nlohmann_json" { };
    glibc = drv "glibc" { static = drv "glibc-static" { }; };
    util-linux = drv "util-linux" { };
    bash = drv "bash" { };
    gawk = drv "gawk" { };
    iputils = drv "iputils" { };
    dosfstools = drv "dosfstools" { };
    mtools = drv "mtools" { };
  };
in
self
