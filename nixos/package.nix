# nixboot, as a callPackage-able derivation:
#   pkgs.callPackage ./nixos/package.nix { }
#
# Outputs (one output, $out):
#   bin/nixboot, bin/nixboot-try (symlink), bin/nixboot-stage1 (static),
#   lib/systemd/system/*.service (from cli/units/),
#   libexec/nixboot/checks/* (built-in checks, from cli/checks/),
#   share/man/man8/nixboot.8 (help2man), share/bash-completion/completions/nixboot.
#
# nixboot-stage1 is linked with -static (stage1-hook/CMakeLists.txt) against
# libc and libstdc++ only: glibc.static provides libc.a, and nixpkgs' GCC
# ships libstdc++.a. That keeps the rest of the package dynamic and avoids
# rebuilding the world as pkgsStatic would; the binary is copied into both
# initrd flavours as-is (no library closure needed).
{
  lib,
  stdenv,
  cmake,
  pkg-config,
  help2man,
  efivar,
  libmd,
  boost,
  spdlog,
  catch2_3,
  nlohmann_json,
  systemd,
  glibc,
  grub2,
  bash,
  coreutils,
  gawk,
  iputils,
  util-linux,
  dosfstools,
  mtools,
}:

stdenv.mkDerivation (finalAttrs: {
  pname = "nixboot";
  version = "0.1.0";

  # The repository root, minus what is not needed to build (VM images,
  # build trees, docs).
  src = lib.cleanSourceWith {
    src = ../.;
    filter =
      path: type:
      let
        rel = lib.removePrefix (toString ../. + "/") (toString path);
        top = builtins.head (lib.splitString "/" rel);
      in
      lib.cleanSourceFilter path type
      && !(lib.hasPrefix "build" top)
      && !(builtins.elem top [
        "vm-tests"
        "result"
      ]);
  };

  nativeBuildInputs = [
    cmake
    pkg-config
    help2man
  ];

  buildInputs = [
    efivar
    libmd # SHA-256
    boost
    spdlog
    nlohmann_json
    systemd # libsystemd (journald, sd_notify)
    glibc.static # libc.a for the static nixboot-stage1
  ];

  # Catch2 v3, only for the tests (the tests build against v2 too:
  # tests/catch.hpp; CMake picks the major it finds).
  checkInputs = [ catch2_3 ];

  # The tests run the real grub-editenv / grub-script-check and bootctl
  # where the source has them; they look them up in PATH.
  nativeCheckInputs = [
    systemd # bootctl
    grub2
    util-linux
    dosfstools
    mtools
  ];

  cmakeFlags = [
    (lib.cmakeBool "NIXBOOT_TESTS" finalAttrs.doCheck)
  ];

  doCheck = true;

  # ctest: the Catch2 binary (one ctest test per TEST_CASE). Tests that need
  # root (tmpfs mounts, chown) or a program that is not in PATH skip
  # themselves, and ctest reports them as skipped (SKIP_RETURN_CODE), never
  # as passed. CI runs ctest this way on every change:
  # scripts/test-unprivileged (an unprivileged user, bootctl and the GRUB
  # tools hidden). The default build has no -Werror (NIXBOOT_WERROR=OFF).
  checkPhase = ''
    runHook preCheck
    ctest --output-on-failure -j $NIX_BUILD_CORES
    runHook postCheck
  '';

  # Units and built-in checks are shipped as plain files in the source; make
  # them point into this package, whatever path the source wrote.
  postInstall = ''
    if [ -d ../cli/units ] && [ -n "$(ls ../cli/units)" ]; then
      mkdir -p $out/lib/systemd/system
      for unit in ../cli/units/*; do
        [ -e "$out/lib/systemd/system/$(basename "$unit")" ] || install -m644 "$unit" $out/lib/systemd/system/
      done
    fi
    if [ -d ../cli/checks ] && [ -n "$(ls ../cli/checks)" ]; then
      mkdir -p $out/libexec/nixboot/checks
      for check in ../cli/checks/*; do
        [ -e "$out/libexec/nixboot/checks/$(basename "$check")" ] || install -m755 "$check" $out/libexec/nixboot/checks/
      done
    fi
    for unit in $out/lib/systemd/system/*; do
      [ -e "$unit" ] || continue
      substituteInPlace "$unit" \
        --replace-quiet /usr/local/bin/ $out/bin/ \
        --replace-quiet /usr/bin/ $out/bin/ \
        --replace-quiet /usr/local/libexec/ $out/libexec/ \
        --replace-quiet /usr/libexec/ $out/libexec/
    done
    # The built-in checks call awk, systemctl, ping, timeout and bash; give
    # them a PATH of their own instead of relying on the service's.
    for check in $out/libexec/nixboot/checks/*; do
      [ -e "$check" ] || continue
      sed -i '1a export PATH=${
        lib.makeBinPath [
          bash
          coreutils
          gawk
          iputils
          systemd
        ]
      }''${PATH:+:$PATH}' "$check"
    done
    patchShebangs $out/libexec
    [ -e $out/bin/nixboot-try ] || ln -s nixboot $out/bin/nixboot-try
  '';

  meta = {
    description = "Bootloader-aware, reboot-safe rollback for NixOS (systemd-boot and GRUB boot counting)";
    platforms = lib.platforms.linux;
    mainProgram = "nixboot";
  };
})
