# Configurations tests/nixos/run evaluates nixos/module.nix with. Each case
# is a NixOS module; `expect` says what evaluation must show.
#   expect.assertion: a failed assertion whose message contains this text
#   expect.golden:    tests/nixos/golden/NAME.conf must equal the generated nixboot.conf
#   expect.ok:        no failed assertion
{
  defaults = {
    config = {
      boot.loader.nixboot.enable = true;
    };
    expect = {
      ok = true;
      golden = "defaults";
    };
  };

  # The ESP at /efi and the XBOOTLDR partition at /boot, as NixOS's
  # systemd-boot module lays them out: nixboot reads XBOOTLDR's entries too.
  xbootldr = {
    config = {
      boot.loader.efi.efiSysMountPoint = "/efi";
      boot.loader.systemd-boot.xbootldrMountPoint = "/boot";
      boot.loader.nixboot.enable = true;
    };
    expect = {
      ok = true;
      golden = "xbootldr";
    };
  };

  grub-efi = {
    config = {
      # The stock GRUB layout: the ESP under /boot, kernels in /boot.
      boot.loader.efi.efiSysMountPoint = "/boot/efi";
      boot.loader.nixboot = {
        enable = true;
        bootloader = "grub";
        grub.device = "nodev";
        tries = 3;
        configurationLimit = 20;
      };
    };
    expect = {
      ok = true;
      golden = "grub-efi";
    };
  };

  grub-bios = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        bootloader = "grub";
        efiSupport = false;
        grub.device = "/dev/disk/by-id/ata-TEST";
      };
      boot.loader.timeout = 2;
    };
    expect = {
      ok = true;
      golden = "grub-bios";
    };
  };

  grub-bios-two-disks = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        bootloader = "grub";
        efiSupport = false;
        grub.devices = [
          "/dev/sda"
          "/dev/sdb"
        ];
      };
    };
    expect.assertion = [ "nixboot installs GRUB to one disk" ];
  };

  grub-efi-nvram = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        bootloader = "grub";
        grub.device = "nodev";
        grub.efiInstallAsRemovable = false;
      };
    };
    expect.assertion = [ "set boot.loader.nixboot.grub.efiInstallAsRemovable = true" ];
  };

  checks = {
    config = {
      boot.loader.efi.efiSysMountPoint = "/efi";
      boot.loader.nixboot = {
        enable = true;
        onFailure = "stay";
        verdictTimeout = 900;
        checkTimeout = 45;
        confirmTimeout = 120;
        stabilityWindow = 60;
        watchdog.timeout = 300;
        checks.web = {
          script = "curl -fsS http://localhost/health";
          timeout = 30;
        };
        checks.disk-space = {
          script = "test -w /var";
          required = false;
        };
        builtinChecks.unitActive.units = [ "sshd.service" ];
        builtinChecks.tcpPort.ports = [ 22 ];
      };
    };
    expect = {
      ok = true;
      golden = "checks";
    };
  };

  no-watchdog = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        watchdog.enable = false;
        panicTimeout = 0;
        builtinChecks.failedUnits.enable = false;
      };
    };
    expect = {
      ok = true;
      golden = "no-watchdog";
      warning = "panicTimeout = 0";
    };
  };

  systemd-initrd = {
    config = {
      boot.initrd.systemd.enable = true;
      boot.loader.nixboot.enable = true;
    };
    expect.ok = true;
  };

  # Disabled: the module must not touch the system at all.
  disabled = {
    config = { };
    expect.ok = true;
  };

  # Each of these must fail evaluation with a message that says what to change.
  both-stock-loaders-on = {
    config = {
      boot.loader.nixboot.enable = true;
      boot.loader.systemd-boot.enable = true;
      boot.loader.grub.enable = true;
    };
    expect.assertion = [
      "set boot.loader.systemd-boot.enable = false"
      "set boot.loader.grub.enable = false"
    ];
  };

  stock-grub-on = {
    config = {
      boot.loader.nixboot.enable = true;
      boot.loader.grub.enable = true;
    };
    expect.assertion = [ "set boot.loader.grub.enable = false" ];
  };

  grub-without-device = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        bootloader = "grub";
      };
    };
    expect.assertion = [ "needs a device: set boot.loader.nixboot.grub.device" ];
  };

  grub-bios-nodev = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        bootloader = "grub";
        efiSupport = false;
        grub.device = "nodev";
      };
    };
    expect.assertion = [ "a BIOS install needs a real disk" ];
  };

  tries-zero = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        tries = 0;
      };
    };
    expect.assertion = [ "boot.loader.nixboot.tries = 0 is out of range" ];
  };

  check-without-script = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        checks.web.timeout = 10;
      };
    };
    expect.assertion = [ "boot.loader.nixboot.checks.web has no script: set boot.loader.nixboot.checks.web.script" ];
  };

  check-bad-name = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        checks."../evil".script = "true";
      };
    };
    expect.assertion = [ "a check name must be letters, digits" ];
  };

  systemd-boot-without-efi = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        efiSupport = false;
      };
    };
    expect.assertion = [ "needs UEFI: set boot.loader.nixboot.efiSupport = true" ];
  };

  extra-setting-not-a-backend-key = {
    config = {
      boot.loader.nixboot = {
        enable = true;
        extraSettings.tries = 5;
      };
    };
    expect.assertion = [ "boot.loader.nixboot.extraSettings.tries: only backend keys (grub-*" ];
  };

  watchdog-conflict = {
    config = {
      boot.loader.nixboot.enable = true;
      systemd.watchdog.runtimeTime = "30s";
    };
    expect.assertion = [ "systemd.watchdog.runtimeTime both want /dev/watchdog" ];
  };
}
