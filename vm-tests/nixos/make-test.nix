# One NixOS VM test of nixboot: a real NixOS installed on a disk image with
# nixboot as its bootloader installer (virtualisation.useBootLoader), booted
# by OVMF (useEFIBoot) into real systemd-boot or GRUB.
#
# Generation 1 is what the image was built with. Each scenario makes
# generation 2 (and 3) from one of generation 1's specialisations:
#   nix-env -p /nix/var/nix/profiles/system --set $(readlink -f /run/current-system/specialisation/NAME)
#   /nix/var/nix/profiles/system/bin/switch-to-configuration boot
# which is exactly what `nixos-rebuild boot` does, so installBootLoader (the
# module's `nixboot install` + autoTry) runs as it does for users.
#
# The guest reboots itself (panic=, on-failure=reboot); QEMU runs with
# -no-reboot (machine.start() without allow_reboot), so every guest reboot
# ends the QEMU process: the script waits for that with wait_for_shutdown()
# and starts the machine again, which keeps the disk and the EFI variables.
{
  pkgs,
  bootloader, # "systemd-boot" | "grub"
  scenario, # "healthy" | "panic" | "failing-check" | "live"
  systemdInitrd ? false,
}:

let
  inherit (pkgs) lib;

  # What each specialisation changes besides /etc/nixboot-test/generation.
  specialisations = {
    healthy = {
      trial = { };
    };
    # boot.debug1 makes NixOS stage 1 stop before mounting the root; with
    # boot.panic_on_fail (set by the module, earlier on the command line)
    # stage 1 exits and the kernel panics; panic=1 reboots.
    panic = {
      trial = {
        boot.kernelParams = lib.mkAfter [ "boot.debug1" ];
      };
    };
    failing-check = {
      trial = {
        boot.loader.nixboot.checks.nixboot-test-fails = {
          script = ''
            echo "nixboot-test: this check always fails" >&2
            exit 1
          '';
          timeout = 20;
        };
      };
    };
    live = {
      trial = { };
      trial-b = { };
    };
  };

  name = "nixboot-${bootloader}-${scenario}${lib.optionalString systemdInitrd "-systemd-initrd"}";

  isSdBoot = bootloader == "systemd-boot";

  scenarioScripts = {
    healthy = ''
      with subtest("nixos-rebuild boot installs generation 2 and arms a one-shot trial"):
          gen = new_generation("trial", arm=True)
          assert gen == 2, gen
          assert entry(2)["state"] == "trial", entry(2)
          ${lib.optionalString isSdBoot ''
            machine.succeed("ls /boot/loader/entries/ | grep -qx 'nixos-generation-2+[0-9]*.conf'")
          ''}

      reboot()

      with subtest("the trial boots generation 2, passes its checks and is promoted"):
          assert running() == "trial"
          machine.succeed("grep -qx 'trial=1' /run/nixboot/boot")
          assert verdict() == "good"
          eventually("generation 2 is the default", lambda: nixboot_json("status")["default"] == "nixos-generation-2")
          assert entry(2)["state"] == "good", entry(2)
          assert machine.succeed("readlink /nix/var/nix/profiles/system").strip() == "system-2-link"
          assert history(2, "promote"), nixboot_json("history")
          ${lib.optionalString isSdBoot ''
            machine.succeed("test -e /boot/loader/entries/nixos-generation-2.conf")
          ''}

      reboot()

      with subtest("a plain reboot stays on generation 2"):
          assert running() == "trial"
          machine.succeed("grep -qx 'trial=0' /run/nixboot/boot")
    '';

    panic = ''
      with subtest("generation 2 (stage 1 fails, boot.panic_on_fail) is armed as a one-shot"):
          gen = new_generation("trial", arm=True)
          assert gen == 2, gen
          machine.succeed("grep -q boot.debug1 /nix/var/nix/profiles/system/kernel-params")

      machine.shutdown()
      machine.start()

      with subtest("the trial panics and the machine comes back on generation 1 by itself"):
          guest_reboots_by_itself()
          assert running() == "base"

      with subtest("the next boot's check marks generation 2 bad and says why"):
          eventually("generation 2 is bad", lambda: entry(2)["state"] == "bad")
          assert nixboot_json("status")["default"] == "nixos-generation-1"
          bad = history(2, "bad")
          assert bad and "verdict" in bad[-1]["reason"], nixboot_json("history")

      reboot()

      with subtest("generation 1 stays the default"):
          assert running() == "base"
          assert entry(2)["state"] == "bad", entry(2)
    '';

    failing-check = ''
      with subtest("generation 2 (a required check fails) is armed as a one-shot"):
          gen = new_generation("trial", arm=True)
          assert gen == 2, gen

      machine.shutdown()
      machine.start()

      with subtest("the trial fails its check, is marked bad and reboots into generation 1"):
          guest_reboots_by_itself()
          assert running() == "base"
          assert entry(2)["state"] == "bad", entry(2)
          bad = history(2, "bad")
          assert bad and "nixboot-test-fails" in bad[-1]["reason"], nixboot_json("history")
          assert nixboot_json("status")["default"] == "nixos-generation-1"
    '';

    live = ''
      with subtest("generation 2 is installed without a trial (autoTry = false)"):
          gen = new_generation("trial", arm=False)
          assert gen == 2, gen
          assert nixboot_json("status")["armed"] is None

      with subtest("a live trial without confirm reverts without a reboot"):
          machine.succeed("nixboot try --live 2 --confirm-timeout 30 >&2")
          assert running() == "trial"
          machine.wait_until_succeeds("grep -qx base /etc/nixboot-test/generation", timeout=300)
          eventually("generation 2 is bad", lambda: entry(2)["state"] == "bad")
          assert nixboot_json("status")["default"] == "nixos-generation-1"
          assert history(2, "live-revert"), nixboot_json("history")

      with subtest("a confirmed live trial is promoted"):
          gen = new_generation("trial-b", arm=False)
          assert gen == 3, gen
          machine.succeed("nixboot try --live 3 --confirm-timeout 300 >&2")
          assert running() == "trial-b"
          # A new process, as a deployer's new SSH connection would be.
          machine.succeed("nixboot confirm >&2")
          eventually("generation 3 is the default", lambda: nixboot_json("status")["default"] == "nixos-generation-3")
          assert entry(3)["state"] == "good", entry(3)
          assert history(3, "live-confirm"), nixboot_json("history")

      reboot()

      with subtest("the confirmed generation boots by default"):
          assert running() == "trial-b"
    '';
  };
in
pkgs.testers.runNixOSTest {
  inherit name;
  meta.timeout = 1800;

  nodes.machine =
    { lib, ... }:
    {
      imports = [ ../../nixos/module.nix ];

      virtualisation.useBootLoader = true;
      virtualisation.useEFIBoot = true;
      virtualisation.memorySize = 1536;
      virtualisation.diskSize = 4096;
      # The hardware watchdog nixboot-stage1 arms on trial boots.
      virtualisation.qemu.options = [
        "-device i6300esb"
        "-action watchdog=reset"
      ];
      boot.initrd.kernelModules = [ "i6300esb" ];
      boot.initrd.systemd.enable = systemdInitrd;

      boot.loader.efi.canTouchEfiVariables = true;
      boot.loader.nixboot = {
        enable = true;
        inherit bootloader;
        grub.device = lib.mkIf (bootloader == "grub") "nodev";
        # OVMF finds EFI/BOOT/BOOTX64.EFI without an NVRAM entry, also in the
        # image-building VM, whose EFI variables are not the test's.
        grub.efiInstallAsRemovable = lib.mkIf (bootloader == "grub") true;
        panicTimeout = 1;
        watchdog.timeout = 120;
        verdictTimeout = 600;
        # The live scenario arms its trials itself (`nixboot try --live`).
        autoTry = scenario != "live";
      };

      environment.etc."nixboot-test/generation".text = "base";

      specialisation = lib.mapAttrs (specName: extra: {
        configuration = {
          imports = [ extra ];
          environment.etc."nixboot-test/generation".text = lib.mkForce specName;
        };
      }) specialisations.${scenario};
    };

  testScript = ''
    import json
    import time


    def nixboot_json(verb):
        return json.loads(machine.succeed(f"nixboot --json {verb}"))


    def entry(gen):
        for e in nixboot_json("list"):
            if e["id"] == f"nixos-generation-{gen}":
                return e
        raise Exception(f"no entry for generation {gen}: {machine.succeed('nixboot list')}")


    def running():
        return machine.succeed("cat /etc/nixboot-test/generation").strip()


    def eventually(what, predicate, timeout=300):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                machine.succeed("nixboot status >&2; nixboot list >&2; nixboot history >&2")
                raise Exception(f"timed out waiting until {what}")
            time.sleep(2)


    def new_generation(spec, arm):
        """What `nixos-rebuild boot` does, with specialisation SPEC of generation 1."""
        machine.succeed(
            "nix-env -p /nix/var/nix/profiles/system --set "
            f"$(readlink -f /run/current-system/specialisation/{spec})",
            "/nix/var/nix/profiles/system/bin/switch-to-configuration boot >&2",
        )
        status = nixboot_json("status")
        gen = status["profile_generation"]
        if arm:
            assert status["armed"] == f"nixos-generation-{gen}", f"autoTry did not arm generation {gen}: {status}"
        assert status["default"] == "nixos-generation-1", f"the default moved before any trial: {status}"
        return gen


    def reboot():
        machine.shutdown()
        machine.start()
        machine.wait_for_unit("multi-user.target")


    def guest_reboots_by_itself():
        """The guest reboots (panic=, on-failure=reboot, watchdog); -no-reboot makes QEMU exit."""
        machine.wait_for_shutdown()
        machine.start()
        machine.wait_for_unit("multi-user.target")


    def verdict():
        machine.wait_until_succeeds("test -s /run/nixboot/verdict", timeout=600)
        # First line: good or bad (docs/contracts.md); a reason may follow.
        return machine.succeed("head -n 1 /run/nixboot/verdict").strip()


    def history(gen, event):
        return [r for r in nixboot_json("history") if r.get("generation") == gen and r.get("event") == event]


    machine.start()
    machine.wait_for_unit("multi-user.target")

    with subtest("generation 1 is adopted as good and is the default"):
        assert running() == "base"
        assert entry(1)["state"] == "good", entry(1)
        assert nixboot_json("status")["default"] == "nixos-generation-1"
        machine.succeed("test -s /etc/nixboot/nixboot.conf")
        machine.succeed("grep -qx 'bootloader = ${bootloader}' /etc/nixboot/nixboot.conf")
        machine.succeed("grep -q 'boot.panic_on_fail' /proc/cmdline")
        machine.succeed("grep -q 'nixboot.entry=nixos-generation-1' /proc/cmdline")
        machine.succeed("grep -qx 'trial=0' /run/nixboot/boot")
  ''
  + scenarioScripts.${scenario};
}
