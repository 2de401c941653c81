# Adds pkgs.nixboot (the module's default package).
final: prev: {
  nixboot = final.callPackage ./package.nix { };
}
