# Declarations of the NixOS options nixos/module.nix reads or sets, with the
# types and defaults nixpkgs gives them, so the module can be evaluated with
# lib.evalModules without all of nixpkgs. Only what the module touches.
{ lib, ... }:

let
  inherit (lib) mkOption types;
  anything = mkOption {
    type = types.anything;
    default = null;
  };
  lines = mkOption {
    type = types.lines;
    default = "";
  };
  bool = default: mkOption {
    type = types.bool;
    inherit default;
  };
  strList = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = strList;

    boot.loader.efi = {
      efiSysMountPoint = mkOption {
        type = types.str;
        default = "/boot";
      };
      canTouchEfiVariables = bool false;
    };
    # Stock loaders: GRUB is on unless something turns it off, as in nixpkgs.
    boot.loader.grub.enable = bool true;
    boot.loader.timeout = mkOption {
      type = types.nullOr types.int;
      default = 5;
    };
    boot.loader.systemd-boot.enable = bool false;
    boot.loader.systemd-boot.xbootldrMountPoint = mkOption {
      type = types.nullOr types.str;
      default = null;
    };

    boot.bootspec.enable = bool true;
    boot.kernelParams = strList;

    boot.initrd = {
      availableKernelModules = strList;
      kernelModules = strList;
      extraUtilsCommands = lines;
      extraUtilsCommandsTest = lines;
      postDeviceCommands = lines;
      extraFiles = mkOption {
        type = types.attrsOf (types.submodule { options.source = anything; });
        default = { };
      };
      systemd.contents = mkOption {
        type = types.attrsOf (types.submodule { options.source = anything; });
        default = { };
      };
      systemd.enable = bool false;
      systemd.storePaths = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
    };

    system.build = mkOption {
      type = types.submoduleWith {
        modules = [
          {
            freeformType = types.lazyAttrsOf types.unspecified;
            # nixpkgs: only one bootloader may set it.
            options.installBootLoader = mkOption {
              type = types.unique {
                message = "Only one bootloader can be enabled at a time.";
              } types.unspecified;
            };
          }
        ];
      };
      default = { };
    };
    system.boot.loader.id = mkOption {
      type = types.str;
      default = "";
    };

    environment.systemPackages = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    environment.etc = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            source = anything;
            text = mkOption {
              type = types.nullOr types.lines;
              default = null;
            };
            mode = mkOption {
              type = types.str;
              default = "symlink";
            };
          };
        }
      );
      default = { };
    };

    systemd.package = anything;
    systemd.packages = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    systemd.services = mkOption {
      type = types.attrsOf types.anything;
      default = { };
    };
    systemd.tmpfiles.rules = strList;
    systemd.watchdog.runtimeTime = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
  };
}
