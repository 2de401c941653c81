{
  description = "nixboot: bootloader-aware, reboot-safe rollback for NixOS";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = import ./nixos/overlay.nix;

      # The module's default package is pkgs.nixboot when the overlay is
      # applied, else it calls ./nixos/package.nix itself.
      nixosModules.default = ./nixos/module.nix;
      nixosModules.nixboot = self.nixosModules.default;

      packages = forAllSystems (pkgs: rec {
        nixboot = pkgs.callPackage ./nixos/package.nix { };
        default = nixboot;
      });

      # The NixOS VM tests use QEMU's i6300esb watchdog and OVMF: x86_64 only.
      checks = lib.genAttrs [ "x86_64-linux" ] (
        system:
        import ./vm-tests/nixos { pkgs = nixpkgs.legacyPackages.${system}; }
        // {
          package = self.packages.${system}.default;
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
