# NixOS module: boot.loader.nixboot — reboot-safe trials of new generations.
#
# Replaces the stock systemd-boot / GRUB installers: `nixos-rebuild boot` or
# `switch` runs `nixboot install` (system.build.installBootLoader) and, with
# autoTry, arms a one-shot trial of the new generation. The early hook
# (nixboot-stage1) runs in the initrd, the late check (nixboot-check.service)
# decides; see nixos/README.md and docs/contracts.md.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    concatStringsSep
    filterAttrs
    literalExpression
    mapAttrs
    mapAttrs'
    mapAttrsToList
    mkDefault
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    nameValuePair
    optional
    optionals
    optionalString
    types
    ;

  cfg = config.boot.loader.nixboot;
  efi = config.boot.loader.efi;
  isGrub = cfg.bootloader == "grub";
  grubDevices = cfg.grub.devices ++ optional (cfg.grub.device != null) cfg.grub.device;
  grubDisks = lib.filter (d: d != "nodev") grubDevices;

  # grub-install --target for this machine's UEFI.
  grubEfiTargets = {
    x86_64-linux = "x86_64-efi";
    i686-linux = "i386-efi";
    aarch64-linux = "arm64-efi";
    riscv64-linux = "riscv64-efi";
    loongarch64-linux = "loongarch64-efi";
  };
  system = pkgs.stdenv.hostPlatform.system;

  # systemd-boot reads entries from the XBOOTLDR partition too (NixOS's
  # boot.loader.systemd-boot.xbootldrMountPoint): nixboot's model of the
  # menu must see them.
  xbootldr = lib.attrByPath [ "boot" "loader" "systemd-boot" "xbootldrMountPoint" ] null config;
  xbootldrSettings = lib.optionalAttrs (!isGrub && xbootldr != null) { inherit xbootldr; };

  # The GRUB backend's keys (boot/grub/backend.cpp parse_grub_settings,
  # docs/grub.md): what `nixboot install --install-bootloader` passes to
  # grub-install, and the menu timeout.
  grubSettings = lib.optionalAttrs isGrub (
    {
      grub-install = "${cfg.grub.package}/bin/grub-install";
      grub-target =
        if cfg.efiSupport then
          grubEfiTargets.${system}
            or (throw "boot.loader.nixboot: no GRUB EFI target known for ${system}")
        else
          "i386-pc";
    }
    // lib.optionalAttrs cfg.efiSupport {
      grub-efi-dir = efi.efiSysMountPoint;
      grub-removable = if cfg.grub.efiInstallAsRemovable then "yes" else "no";
    }
    // lib.optionalAttrs (!cfg.efiSupport && grubDisks != [ ]) {
      grub-device = builtins.head grubDisks;
    }
    // lib.optionalAttrs (config.boot.loader.timeout != null) {
      grub-timeout = config.boot.loader.timeout;
    }
  );
  scriptedInitrd = !config.boot.initrd.systemd.enable;

  checksDir = "/etc/nixboot/checks.d";
  libexecChecks = "${cfg.package}/libexec/nixboot/checks";

  # Names that nixboot-check's runner and [check.NAME] accept as file names.
  validCheckName = name: builtins.match "[A-Za-z0-9][A-Za-z0-9_.-]*" name != null;

  # Built-in checks enabled by builtinChecks.*: NAME -> { required; command; }.
  # Each becomes a small wrapper in the checks directory that execs the
  # shipped executable with its arguments.
  builtinChecks =
    let
      b = cfg.builtinChecks;
    in
    filterAttrs (_: c: c.enabled) {
      "failed-units" = {
        enabled = b.failedUnits.enable;
        inherit (b.failedUnits) required;
        args = b.failedUnits.allow;
      };
      "unit-active" = {
        enabled = b.unitActive.units != [ ];
        inherit (b.unitActive) required;
        args = b.unitActive.units;
      };
      "tcp-port" = {
        enabled = b.tcpPort.ports != [ ];
        inherit (b.tcpPort) required;
        args = map toString b.tcpPort.ports;
      };
      "host-reachable" = {
        enabled = b.hostReachable.hosts != [ ];
        inherit (b.hostReachable) required;
        args = b.hostReachable.hosts;
      };
      "default-route" = {
        enabled = b.defaultRoute.enable;
        inherit (b.defaultRoute) required;
        args = [ ];
      };
    };

  # host-reachable takes one HOST per call (cli/checks/host-reachable); the
  # others take their whole list.
  builtinCheckScript =
    name: c:
    pkgs.writeShellScript "nixboot-builtin-check-${name}" (
      if name == "host-reachable" then
        ''
          status=0
          for host in ${lib.escapeShellArgs c.args}; do
            ${libexecChecks}/${name} "$host" || status=1
          done
          exit $status
        ''
      else
        ''
          exec ${libexecChecks}/${name} ${lib.escapeShellArgs c.args}
        ''
    );

  userCheckScript =
    name: c:
    pkgs.writeShellScript "nixboot-check-${name}" ''
      set -eu
      export PATH=${lib.makeBinPath c.path}''${PATH:+:$PATH}
      ${c.script}
    '';

  kind = required: if required then "required" else "wanted";

  # The checks directory: checks-dir/required/NAME and checks-dir/wanted/NAME.
  # mode makes setup-etc copy the file (owned by root, not a symlink), which
  # the runner insists on.
  checkFiles =
    mapAttrs' (
      name: c:
      nameValuePair "nixboot/checks.d/${kind c.required}/${name}" {
        source = builtinCheckScript name c;
        mode = "0755";
      }
    ) builtinChecks
    // mapAttrs' (
      name: c:
      nameValuePair "nixboot/checks.d/${kind c.required}/${name}" {
        source = userCheckScript name c;
        mode = "0755";
      }
    ) (filterAttrs (_: c: c.script != null) cfg.checks);

  configText = import ./config-file.nix { inherit lib; } {
    inherit (cfg) bootloader tries;
    # systemd-boot: the ESP. GRUB: its boot directory (grub.cfg, kernels);
    # the ESP is grub-efi-dir, where grubenv goes when GRUB cannot write
    # the boot directory (docs/contracts.md).
    esp = if isGrub then cfg.grub.bootDir else efi.efiSysMountPoint;
    inherit (cfg) profile state;
    efivars = "/sys/firmware/efi/efivars";
    keep = if cfg.configurationLimit == null then 0 else cfg.configurationLimit;
    inherit checksDir;
    inherit (cfg) checkTimeout verdictTimeout confirmTimeout stabilityWindow;
    onFailure = cfg.onFailure;
    watchdogDevice = cfg.watchdog.device;
    watchdogTimeout = if cfg.watchdog.enable then cfg.watchdog.timeout else 0;
    checkTimeouts = mapAttrs (_: c: c.timeout) (
      filterAttrs (_: c: c.timeout != null && c.script != null) cfg.checks
    );
    extraSettings = grubSettings // xbootldrSettings // cfg.extraSettings;
  };

  configFile = pkgs.writeText "nixboot.conf" configText;

  nixbootCmd = "${cfg.package}/bin/nixboot --config ${configFile}";

  # system.build.installBootLoader: switch-to-configuration runs it with the
  # new toplevel as $1; NIXOS_INSTALL_BOOTLOADER=1 asks for the loader binary.
  # `nixboot install` syncs every generation of the profile (the new one is
  # already in it) and keeps the newest good one as the default, so $1 only
  # serves to find the generation autoTry arms.
  # It reads the NEW generation's config (a store path), not /etc, which
  # still belongs to the running generation at this point.
  installScript = pkgs.writeShellScript "install-nixboot" ''
    set -eu
    export PATH=${lib.makeBinPath installPath}''${PATH:+:$PATH}
    if [ "$#" -ne 1 ]; then
      echo "install-nixboot: expected one argument, the new system's toplevel" >&2
      exit 2
    fi
    toplevel=$(readlink -f "$1")
    esp=${lib.escapeShellArg efi.efiSysMountPoint}

    ${
      if isGrub then
        ''
          install_flag=
          if [ "''${NIXOS_INSTALL_BOOTLOADER:-0}" = 1 ]; then
            install_flag=--install-bootloader
          fi
          ${nixbootCmd} install $install_flag
        ''
      else
        ''
          if [ "''${NIXOS_INSTALL_BOOTLOADER:-0}" = 1 ] || [ ! -d "$esp/EFI/systemd" ]; then
            bootctl --esp-path="$esp" ${optionalString (!cfg.canTouchEfiVariables) "--no-variables"} install
          fi
          ${nixbootCmd} install
        ''
    }

    ${optionalString cfg.autoTry ''
      # Arm a one-shot trial of the new generation, but only on a running
      # NixOS that is not already running this very toplevel (nixos-install
      # and image builds have no /run/booted-system; a rebuild without
      # changes installs the booted toplevel again).
      booted=$(readlink -f /run/booted-system 2>/dev/null || true)
      if [ -n "$booted" ] && [ "$booted" != "$toplevel" ]; then
        profile=${lib.escapeShellArg cfg.profile}
        gen=
        for link in "$profile"-*-link; do
          [ -L "$link" ] || continue
          n=''${link#"$profile"-}
          n=''${n%-link}
          case $n in *[!0-9]*|"") continue ;; esac
          if [ "$(readlink -f "$link")" = "$toplevel" ]; then
            if [ -z "$gen" ] || [ "$n" -gt "$gen" ]; then gen=$n; fi
          fi
        done
        if [ -z "$gen" ]; then
          echo "nixboot: $toplevel is not a generation of $profile; installed, no trial armed" >&2
        elif ! ${nixbootCmd} try "$gen"; then
          echo "nixboot: generation $gen: no new trial armed (see the message above); 'nixboot status' shows what the next boot does" >&2
        fi
      fi
    ''}
  '';

  installPath =
    [
      cfg.package
      pkgs.coreutils
    ]
    ++ optional (!isGrub) config.systemd.package
    ++ optionals isGrub [ cfg.grub.package ]
    ++ optional (isGrub && cfg.efiSupport && cfg.canTouchEfiVariables) pkgs.efibootmgr;

  checkModule =
    { name, ... }:
    {
      options = {
        script = mkOption {
          type = types.nullOr types.lines;
          default = null;
          example = "curl --fail --silent http://localhost:8080/health";
          description = ''
            Shell script (bash, `set -eu`) of the check; exit status 0 means
            healthy. Required: a check without a script is an error.
          '';
        };
        path = mkOption {
          type = types.listOf types.package;
          default = [ ];
          example = literalExpression "[ pkgs.curl ]";
          description = "Packages whose {file}`bin` directories are put in the check's `PATH`.";
        };
        timeout = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          example = 30;
          description = ''
            Seconds the check may run before it is killed and counted as
            failed (`[check.${name}] timeout` in nixboot.conf). `null` uses
            {option}`boot.loader.nixboot.checkTimeout`.
          '';
        };
        required = mkOption {
          type = types.bool;
          default = true;
          description = ''
            Whether a failure of this check marks the trial bad (a *required*
            check) or is only reported (a *wanted* check).
          '';
        };
      };
    };

  builtinOptions = what: requiredDefault: {
    required = mkOption {
      type = types.bool;
      default = requiredDefault;
      description = "Whether a failure of the ${what} check marks the trial bad (otherwise it is only reported).";
    };
  };
in
{
  options.boot.loader.nixboot = {
    enable = mkEnableOption ''
      nixboot, which installs generations with a bootloader-enforced trial:
      a new generation that panics, hangs or fails its health checks is
      abandoned by the bootloader's own fallback and the machine comes back
      on the last good generation'';

    package = mkOption {
      type = types.package;
      default = pkgs.nixboot or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.nixboot or (pkgs.callPackage ./package.nix { })";
      description = "The nixboot package (nixboot, nixboot-try, nixboot-stage1, units, built-in checks).";
    };

    bootloader = mkOption {
      type = types.enum [
        "systemd-boot"
        "grub"
      ];
      default = "systemd-boot";
      description = ''
        The bootloader nixboot writes entries for and whose counters enforce
        the trials. `systemd-boot` needs UEFI; `grub` works with UEFI
        ({option}`boot.loader.nixboot.efiSupport`) and BIOS
        ({option}`boot.loader.nixboot.grub.devices`).
      '';
    };

    tries = mkOption {
      type = types.ints.unsigned;
      default = 1;
      example = 3;
      description = ''
        How many boots a trial gets before the bootloader gives up on it
        (1–100). A one-shot trial (autoTry, `nixboot try`) costs at most this
        many failed boots.
      '';
    };

    autoTry = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether `nixos-rebuild boot`/`switch` arms a one-shot trial of the new
        generation, so the next reboot tries it once and falls back to the
        last good generation unless it passes its checks. Without it, new
        generations are installed as trials that only `nixboot try GEN` arms.
      '';
    };

    checks = mkOption {
      type = types.attrsOf (types.submodule checkModule);
      default = { };
      example = literalExpression ''
        {
          web = { script = "curl -fsS http://localhost/health"; path = [ pkgs.curl ]; timeout = 30; };
          disk-space = { script = "test $(df --output=pcent / | tail -1 | tr -dc 0-9) -lt 95"; required = false; };
        }
      '';
      description = ''
        Health checks run by `nixboot-check.service` after `multi-user.target`
        on every boot; on a trial boot, all required checks passing promotes
        the generation, any required check failing marks it bad. Installed
        as {file}`/etc/nixboot/checks.d/{required,wanted}/NAME`.
      '';
    };

    builtinChecks = {
      failedUnits = builtinOptions "failed-units" false // {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to run the built-in check that fails when a systemd unit has failed.";
        };
        allow = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "systemd-networkd-wait-online.service" ];
          description = "Units whose failure the failed-units check ignores.";
        };
      };
      unitActive = builtinOptions "unit-active" true // {
        units = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "sshd.service" ];
          description = "Units that must be active (the unit-active check runs when this is not empty).";
        };
      };
      tcpPort = builtinOptions "tcp-port" true // {
        ports = mkOption {
          type = types.listOf types.port;
          default = [ ];
          example = [ 22 ];
          description = "Local TCP ports that must accept connections (the tcp-port check runs when this is not empty).";
        };
      };
      hostReachable = builtinOptions "host-reachable" false // {
        hosts = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "192.168.1.1" ];
          description = "Hosts that must answer (the host-reachable check runs when this is not empty).";
        };
      };
      defaultRoute = builtinOptions "default-route" false // {
        enable = mkOption {
          type = types.bool;
          default = false;
          description = "Whether to run the built-in check that a default route exists.";
        };
      };
    };

    onFailure = mkOption {
      type = types.enum [
        "reboot"
        "stay"
      ];
      default = "reboot";
      description = ''
        What a trial boot whose required checks fail does after marking the
        generation bad: `reboot` into the last good generation, or `stay`
        (for debugging; the bootloader default is already the good one).
      '';
    };

    checkTimeout = mkOption {
      type = types.ints.positive;
      default = 60;
      description = "Default seconds a health check may run (per check: `checks.<name>.timeout`).";
    };

    verdictTimeout = mkOption {
      type = types.ints.positive;
      default = 600;
      description = ''
        Seconds from boot within which a trial boot must reach its verdict;
        past it the trial is marked bad (and the watchdog stops being fed).
      '';
    };

    confirmTimeout = mkOption {
      type = types.ints.positive;
      default = 300;
      description = "Seconds a live trial (`nixboot try --live`) waits for `nixboot confirm` before reverting.";
    };

    stabilityWindow = mkOption {
      type = types.ints.unsigned;
      default = 0;
      description = ''
        Seconds a trial boot's required checks must keep passing, with no
        service restarting or failing, before it is promoted (0: promoted
        as soon as they pass). Counts against `verdictTimeout`.
      '';
    };

    watchdog = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Whether nixboot-stage1 arms the hardware watchdog on trial boots, so
          a trial that hangs is reset by the hardware (the watchdog is fed
          until the verdict). Needs a watchdog driver in the initrd
          (e.g. `boot.initrd.kernelModules = [ "i6300esb" ]` in QEMU,
          `iTCO_wdt`, `sp5100_tco`); without a device the hook says so and
          relies on `panic=` and the verdict timeout.
        '';
      };
      timeout = mkOption {
        type = types.ints.positive;
        default = 120;
        description = "Watchdog timeout in seconds (kernel parameter `nixboot.watchdog=SEC`).";
      };
      device = mkOption {
        type = types.str;
        default = "/dev/watchdog";
        description = "The watchdog device.";
      };
    };

    panicTimeout = mkOption {
      type = types.ints.unsigned;
      default = 10;
      description = ''
        Seconds after a kernel panic before the machine reboots (`panic=N`);
        with `boot.panic_on_fail`, a failing NixOS stage 1 panics instead of
        waiting at a prompt. 0 leaves `panic=` unset: a panicking trial then
        waits forever unless the watchdog resets it.
      '';
    };

    configurationLimit = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      example = 20;
      description = ''
        Maximum number of generations kept in the boot menu (`keep`); `null`
        keeps all. Besides the newest N, nixboot always keeps the newest good
        generation, the default, an armed trial, the booted (running) one and
        the one the firmware reports as booted; older good generations beyond
        N are removed.
      '';
    };

    profile = mkOption {
      type = types.str;
      default = "/nix/var/nix/profiles/system";
      description = "The system profile whose generations nixboot installs.";
    };

    state = mkOption {
      type = types.str;
      default = "/var/lib/nixboot";
      description = "nixboot's state directory (the trial journal and the lock).";
    };

    canTouchEfiVariables = mkOption {
      type = types.bool;
      default = efi.canTouchEfiVariables;
      defaultText = literalExpression "config.boot.loader.efi.canTouchEfiVariables";
      description = ''
        Whether installing the loader may register it in the firmware's
        boot entries (`bootctl install` without `--no-variables`,
        `grub-install` without `--no-nvram`). As for the stock loaders.
      '';
    };

    efiSupport = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether the machine boots with UEFI. `systemd-boot` requires it;
        with `grub`, false means a BIOS install to
        {option}`boot.loader.nixboot.grub.devices`.
      '';
    };

    grub = {
      device = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/dev/disk/by-id/wwn-0x500001234567890a";
        description = ''
          The disk GRUB's boot code is written to (BIOS), or `nodev` for an
          EFI-only install. Shorthand for a one-element
          {option}`boot.loader.nixboot.grub.devices`, as in the stock GRUB module.
        '';
      };
      devices = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "/dev/sda" "/dev/sdb" ];
        description = "Disks GRUB is installed to (BIOS), or `[ \"nodev\" ]` with EFI.";
      };
      bootDir = mkOption {
        type = types.str;
        default = "/boot";
        example = "/boot";
        description = ''
          Where GRUB's {file}`grub/grub.cfg` and the kernels go (nixboot's
          `esp` for GRUB; grub-install's `--boot-directory`). With UEFI the
          ESP is {option}`boot.loader.efi.efiSysMountPoint`; when GRUB cannot
          write its environment block here (btrfs, LVM, RAID, LUKS) nixboot
          keeps it on the ESP.
        '';
      };
      efiInstallAsRemovable = mkOption {
        type = types.bool;
        default = !cfg.canTouchEfiVariables;
        defaultText = literalExpression "!config.boot.loader.nixboot.canTouchEfiVariables";
        description = "Whether GRUB EFI is installed to the removable-media path {file}`EFI/BOOT/BOOTX64.EFI`.";
      };
      package = mkOption {
        type = types.package;
        default = if cfg.efiSupport then pkgs.grub2_efi else pkgs.grub2;
        defaultText = literalExpression "if efiSupport then pkgs.grub2_efi else pkgs.grub2";
        description = "The GRUB package whose grub-install and grub-editenv nixboot uses.";
      };
    };

    extraSettings = mkOption {
      type = types.attrsOf (
        types.oneOf [
          types.str
          types.int
        ]
      );
      default = { };
      example = {
        grub-env-fallback = "stage1";
      };
      description = ''
        Further `key = value` lines for {file}`/etc/nixboot/nixboot.conf`:
        only backend keys (`grub-*`, see docs/contracts.md).
      '';
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions =
        [
          {
            assertion = !config.boot.loader.systemd-boot.enable;
            message = "boot.loader.nixboot replaces the stock systemd-boot installer: set boot.loader.systemd-boot.enable = false (and choose boot.loader.nixboot.bootloader = \"systemd-boot\").";
          }
          {
            assertion = !config.boot.loader.grub.enable;
            message = "boot.loader.nixboot replaces the stock GRUB installer: set boot.loader.grub.enable = false (and choose boot.loader.nixboot.bootloader = \"grub\" with boot.loader.nixboot.grub.devices).";
          }
          {
            assertion = cfg.tries >= 1 && cfg.tries <= 100;
            message = "boot.loader.nixboot.tries = ${toString cfg.tries} is out of range: a trial needs between 1 and 100 tries (1 is a one-shot).";
          }
          {
            assertion = isGrub || cfg.efiSupport;
            message = "boot.loader.nixboot.bootloader = \"systemd-boot\" needs UEFI: set boot.loader.nixboot.efiSupport = true, or use bootloader = \"grub\" for BIOS.";
          }
          {
            assertion = !isGrub || grubDevices != [ ];
            message = "boot.loader.nixboot.bootloader = \"grub\" needs a device: set boot.loader.nixboot.grub.device = \"/dev/disk/by-id/...\" (BIOS) or \"nodev\" (UEFI only, with efiSupport = true).";
          }
          {
            assertion = !isGrub || cfg.efiSupport || !(builtins.elem "nodev" grubDevices);
            message = "boot.loader.nixboot.grub.devices contains \"nodev\" but efiSupport = false: a BIOS install needs a real disk, or set boot.loader.nixboot.efiSupport = true.";
          }
          {
            assertion = !isGrub || cfg.efiSupport || builtins.length grubDisks <= 1;
            message = "boot.loader.nixboot.grub.devices = [ ${toString grubDisks} ]: nixboot installs GRUB to one disk; keep one in boot.loader.nixboot.grub.devices (mirrored boot disks are not supported yet).";
          }
          {
            assertion = !(isGrub && cfg.efiSupport && !cfg.canTouchEfiVariables && !cfg.grub.efiInstallAsRemovable);
            message = "boot.loader.nixboot: GRUB EFI without canTouchEfiVariables can only be found by the firmware at the removable path: set boot.loader.nixboot.grub.efiInstallAsRemovable = true (or canTouchEfiVariables = true).";
          }
          {
            assertion = !isGrub || lib.hasPrefix "/" cfg.grub.bootDir;
            message = "boot.loader.nixboot.grub.bootDir = '${cfg.grub.bootDir}' must be an absolute path.";
          }
          {
            assertion = lib.hasPrefix "/" efi.efiSysMountPoint;
            message = "boot.loader.efi.efiSysMountPoint = '${efi.efiSysMountPoint}' must be an absolute path (nixboot's esp).";
          }
          {
            assertion = config.boot.bootspec.enable;
            message = "boot.loader.nixboot reads each generation's bootspec (boot.json): set boot.bootspec.enable = true.";
          }
          {
            assertion = !(cfg.watchdog.enable && config.systemd.watchdog.runtimeTime != null);
            message = "boot.loader.nixboot.watchdog.enable and systemd.watchdog.runtimeTime both want ${cfg.watchdog.device}: set one of them to false/null.";
          }
        ]
        ++ mapAttrsToList (name: c: {
          assertion = c.script != null;
          message = "boot.loader.nixboot.checks.${name} has no script: set boot.loader.nixboot.checks.${name}.script (a shell script, exit 0 = healthy) or remove the check.";
        }) cfg.checks
        ++ mapAttrsToList (key: _: {
          assertion = lib.hasPrefix "grub-" key && builtins.match "[a-z0-9-]+" key != null;
          message = "boot.loader.nixboot.extraSettings.${key}: only backend keys (grub-*, docs/contracts.md) belong here; the other nixboot.conf keys have options of their own.";
        }) cfg.extraSettings
        ++ mapAttrsToList (name: _: {
          assertion = validCheckName name;
          message = "boot.loader.nixboot.checks.\"${name}\": a check name must be letters, digits, '_', '.', '-' and start with a letter or digit (it becomes a file name).";
        }) cfg.checks
        ++ mapAttrsToList (name: _: {
          assertion = !(builtinChecks ? ${name});
          message = "boot.loader.nixboot.checks.${name} has the name of an enabled built-in check: rename it.";
        }) cfg.checks;

      warnings =
        optional (isGrub && cfg.efiSupport && grubDisks != [ ])
          "boot.loader.nixboot: GRUB is installed for UEFI only (efiSupport = true); the BIOS disk(s) ${toString grubDisks} are ignored."
        ++ optional (cfg.panicTimeout == 0)
          "boot.loader.nixboot.panicTimeout = 0: a trial that panics waits forever instead of falling back (unless the watchdog resets it)."
        ++ optional (!cfg.watchdog.enable && cfg.panicTimeout == 0)
          "boot.loader.nixboot: with neither the watchdog nor panic= a hung trial needs a human to reset it.";

      # The stock GRUB module defaults to enabled; systemd-boot does the same.
      boot.loader.grub.enable = mkDefault false;

      boot.kernelParams =
        optional (cfg.panicTimeout > 0) "panic=${toString cfg.panicTimeout}"
        ++ [
          "boot.panic_on_fail"
          "nixboot.watchdog=${if cfg.watchdog.enable then toString cfg.watchdog.timeout else "0"}"
        ];

      # nixboot-stage1 mounts efivarfs itself when the kernel has the module.
      boot.initrd.availableKernelModules = optional cfg.efiSupport "efivarfs";

      system.build.installBootLoader = installScript;
      system.boot.loader.id = "nixboot";

      environment.systemPackages = [ cfg.package ] ++ optional isGrub cfg.grub.package;
      environment.etc = checkFiles // {
        "nixboot/nixboot.conf".source = configFile;
        # `nixboot check` refuses a missing checks directory; the runner
        # skips dot files, so these keep both directories in place.
        "nixboot/checks.d/required/.keep".text = "";
        "nixboot/checks.d/wanted/.keep".text = "";
      };

      # The units of cli/units/, shipped by the package. NixOS ignores their
      # [Install] sections, so the same WantedBy/RequiredBy are given here
      # (tests/nixos/run compares them). A switch must not restart them: a
      # re-run check in the middle of a live trial, or a feeder that lets go
      # of the armed watchdog, is not what a configuration change means.
      systemd.packages = [ cfg.package ];
      systemd.services.nixboot-check = {
        wantedBy = [ "multi-user.target" ];
        requiredBy = [ "boot-complete.target" ];
        restartIfChanged = false;
        # The loader's state is read and written there (the unit file names /boot).
        unitConfig.RequiresMountsFor = [ (if isGrub then cfg.grub.bootDir else efi.efiSysMountPoint) ];
        # The GRUB backend reads its state with grub-editenv / grub-probe.
        path = optional isGrub cfg.grub.package;
      };
      systemd.services.nixboot-watchdog = {
        wantedBy = [ "sysinit.target" ];
        restartIfChanged = false;
      };
      systemd.tmpfiles.rules = [ "d ${cfg.state} 0700 root root -" ];
    }

    # The early hook, scripted stage 1: after udev has settled and LUKS/LVM
    # are open (a password prompt must not eat the watchdog's time), before
    # the root is mounted; /run is moved into stage 2 with the record.
    (mkIf scriptedInitrd {
      # nixboot-stage1 reads watchdog-device, watchdog-timeout and
      # verdict-timeout from here (stage1-hook/hook.cpp).
      boot.initrd.extraFiles."/etc/nixboot/nixboot.conf".source = configFile;
      boot.initrd.extraUtilsCommands = ''
        copy_bin_and_libs ${cfg.package}/bin/nixboot-stage1
      '';
      boot.initrd.extraUtilsCommandsTest = ''
        test -x $out/bin/nixboot-stage1
      '';
      # nixboot-stage1 runs only where /etc/initrd-release marks the initrd
      # (systemd's in_initrd() test); the systemd initrd has it already.
      boot.initrd.postDeviceCommands = lib.mkBefore ''
        [ -e /etc/initrd-release ] || { mkdir -p /etc; : > /etc/initrd-release; }
        nixboot-stage1 || true
      '';
    })

    # The early hook, systemd stage 1: same place in the order.
    (mkIf (!scriptedInitrd) {
      boot.initrd.systemd.contents."/etc/nixboot/nixboot.conf".source = configFile;
      boot.initrd.systemd.storePaths = [ "${cfg.package}/bin/nixboot-stage1" ];
      boot.initrd.systemd.services.nixboot-stage1 = {
        description = "nixboot early trial hook";
        wantedBy = [ "initrd.target" ];
        after = [
          "systemd-modules-load.service"
          "cryptsetup.target"
        ];
        before = [
          "sysroot.mount"
          "initrd-root-fs.target"
        ];
        unitConfig.DefaultDependencies = false;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${cfg.package}/bin/nixboot-stage1";
          TimeoutStartSec = "10s";
        };
      };
    })
  ]);
}
