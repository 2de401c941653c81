"""GRUB plug-ins for vm-tests/run (see vm-tests/README.md, "Plugging in a
bootloader"): `grub-efi` (GRUB x86_64-efi under OVMF) and `grub-bios` (GRUB
i386-pc under SeaBIOS), with real GRUB 2.06 from Debian's packages.

The boot disk (vm-tests/grub/grubvm.py) is MBR-partitioned, partition 1 is
FAT32 labelled ESP (the guest mounts LABEL=ESP on /boot), GRUB's prefix is
/grub on it: grub.cfg and grubenv live in /boot/grub/ and kernels in
/boot/kernels/ as the guest sees them. Generation 1 is installed the way
NixOS's stock GRUB installer leaves a fresh machine (install-grub.pl: a
"NixOS - Default" entry and the "All configurations" submenu, the
next_entry/saved_entry header, no nixboot yet); the scenarios then run the
real `nixboot install --bootloader grub` inside the guest.

This file also registers the GRUB-only scenarios:
  g0  grub-machinery: real GRUB counts a trial down on the harness's real
      root (systemd), with a hand-written counting grub.cfg
      (vm-tests/grub/refcfg.py), no nixboot: proves firmware, GRUB, the
      literal decrement persisted by save_env, the trial command line seen
      by stage 1, and the fallback to generation 1.
  8   unwritable-env: see grub_unwritable_env below.
"""
import base64
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import grubvm  # noqa: E402
import refcfg  # noqa: E402
from harness import images  # noqa: E402
from harness.bootloaders import Bootloader, register  # noqa: E402
from harness.scenario import Ctx, scenario  # noqa: E402
from harness.util import HarnessError  # noqa: E402

KERNEL_FILE = f"{images.KERNEL_NAME}-bzImage"   # like NixOS: <store hash>-<name>-bzImage

# Everything GRUB prints goes to the serial console log of the boot: OVMF
# mirrors the EFI console to the serial port; for i386-pc the core image's
# embedded config switches the terminal to the serial port before it loads
# the real grub.cfg (whoever writes that file).
BIOS_EARLY_CFG = """serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
configfile ${prefix}/grub.cfg
"""


def initrd_file(variant: str) -> str:
    return f"{images.toplevel_name(variant)[:32]}-initrd-{variant}"


def stock_nixos_grub_cfg(generation1: str, initrd: str) -> str:
    """grub.cfg as NixOS's install-grub.pl leaves it with one generation
    (reduced to what matters here: header with next_entry/saved_entry,
    'NixOS - Default', the 'All configurations' submenu)."""
    params = " ".join(images.BASE_PARAMS)
    linux = f"linux /kernels/{KERNEL_FILE} init={generation1}/init {params}"
    return f"""# Automatically generated.  DO NOT CHANGE THIS FILE!
# (a stock NixOS GRUB configuration, written by vm-tests/grub/plugin.py)
if [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "${{next_entry}}" ]; then
  set default="${{next_entry}}"
  set next_entry=
  save_env next_entry
  set timeout=1
else
  set default=0
  set timeout=0
fi
menuentry "NixOS - Default" --class nixos --unrestricted {{
  {linux}
  initrd /kernels/{initrd}
}}
submenu "NixOS - All configurations" --class submenu {{
  menuentry "NixOS - Configuration 1 (nixboot-vm good)" --class nixos {{
    {linux}
    initrd /kernels/{initrd}
  }}
}}
"""


def _toplevel_initrd(nix_img: Path, variant: str, dest: Path) -> None:
    """Copies a generation's initrd out of the harness's /nix image."""
    path = f"/store/{images.toplevel_name(variant)}/initrd"
    p = subprocess.run(["debugfs", "-R", f"dump -p {path} {dest}", str(nix_img)],
                       capture_output=True, text=True)
    if not dest.exists() or dest.stat().st_size == 0:
        raise HarnessError(f"{nix_img}: cannot read {path}: {p.stderr.strip()}")


class _Grub(Bootloader):
    nixboot_name = "grub"
    firmware = "?"
    scenarios = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "g0"}

    def build_boot_image(self, kern, generation1: str) -> Path:
        img = self.workdir / f"boot-{self.name}.img"
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            initrd = self.workdir / "initrd-good"
            if not initrd.exists():
                initrd = tmp / "initrd-good"
                _toplevel_initrd(self.workdir / "nix.img", "good", initrd)
            cfg = tmp / "grub.cfg"
            cfg.write_text(stock_nixos_grub_cfg(generation1, initrd_file("good")))
            check = subprocess.run(["grub-script-check", str(cfg)], capture_output=True, text=True)
            if check.returncode != 0:
                raise HarnessError(f"stock grub.cfg: grub-script-check: {check.stdout}{check.stderr}")
            try:
                grubvm.make_disk(img, self.firmware, {
                    "/grub/grub.cfg": cfg,
                    f"/kernels/{KERNEL_FILE}": kern.vmlinuz,
                    f"/kernels/{initrd_file('good')}": initrd,
                }, fs="fat", size_mb=256, label="ESP",
                    bios_early_cfg=BIOS_EARLY_CFG)
            except grubvm.VmError as e:
                raise HarnessError(f"{self.name}: building the boot disk: {e}")
        return img


@register
class GrubEfi(_Grub):
    name = "grub-efi"
    firmware = "efi"

    def firmware_args(self, machine_dir: Path) -> list:
        vars_copy = machine_dir / "OVMF_VARS.fd"
        if not vars_copy.exists():
            shutil.copy2(grubvm.OVMF_VARS, vars_copy)
        return ["-drive", f"if=pflash,format=raw,readonly=on,file={grubvm.OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,file={vars_copy}"]


@register
class GrubBios(_Grub):
    name = "grub-bios"
    firmware = "bios"

    def firmware_args(self, machine_dir: Path) -> list:
        return ["-bios", str(grubvm.SEABIOS)]


# ---------------------------------------------------------------------------
# GRUB-only scenarios

BOOT = 240
BROKEN = 180


def _grubenv_block(values: dict) -> bytes:
    """A 1024-byte env block as grub-editenv writes it."""
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "grubenv"
        grubvm.run(["grub-editenv", str(f), "create"])
        grubvm.run(["grub-editenv", str(f), "set"] + [f"{k}={v}" for k, v in values.items()])
        return f.read_bytes()


def _guest_grubenv(ctx: Ctx) -> dict:
    """/boot/grub/grubenv as the guest reads it (must be a 1024-byte block)."""
    out = ctx.sh("wc -c < /boot/grub/grubenv; grep -a -v '^#' /boot/grub/grubenv || true")
    lines = out.splitlines()
    if not lines or lines[0].strip() != "1024":
        ctx.fail(f"boot {ctx.m.boot.number}: /boot/grub/grubenv is {lines[:1]} bytes, not 1024")
    return dict(l.split("=", 1) for l in lines[1:] if "=" in l)


def _trial_words(ctx: Ctx, boot) -> dict:
    """The nixboot.* words of a boot's kernel command line (as the initrd printed it)."""
    m = boot.first(r"NIXBOOT-VM: cmdline: (.*)")
    if not m:
        ctx.fail(f"boot {boot.number}: the initrd never printed its command line")
    return dict(w.split("=", 1) for w in m[1].group(1).split() if w.startswith("nixboot."))


@scenario("g0", "grub-machinery")
def grub_machinery(ctx: Ctx):
    """Real GRUB counting with the harness's root, no nixboot binaries used:
    a hand-written counting grub.cfg (refcfg.py) and a grubenv arming
    generation 2 (panics in stage 1) with 2 tries."""
    b = ctx.power_on(BOOT)
    if b.stage1_of() != "good":
        ctx.fail(f"boot 1 (stock grub.cfg) ran the initrd of {b.stage1_of()}, expected good")
    good, panic = images.store_path("good"), images.store_path("panic")
    params = list(images.BASE_PARAMS)
    cfg = refcfg.grub_cfg([
        refcfg.MenuEntry("nixos-generation-2", "NixOS - Configuration 2 (panic)",
                         f"/kernels/{KERNEL_FILE}", f"/kernels/{initrd_file('panic')}",
                         [f"init={panic}/init", *params]),
        refcfg.MenuEntry("nixos-generation-1", "NixOS - Configuration 1 (good)",
                         f"/kernels/{KERNEL_FILE}", f"/kernels/{initrd_file('good')}",
                         [f"init={good}/init", *params]),
    ], default_id="nixos-generation-1")
    env = _grubenv_block({"nixboot_trial": "nixos-generation-2", "nixboot_tries": "2",
                          "nixboot_default": "nixos-generation-1"})
    ctx.sh(f"""set -e
cp {panic}/initrd /boot/kernels/{initrd_file('panic')}
echo {base64.b64encode(cfg.encode()).decode()} | base64 -d > /boot/grub/grub.cfg.new
mv /boot/grub/grub.cfg.new /boot/grub/grub.cfg
echo {base64.b64encode(env).decode()} | base64 -d > /boot/grub/grubenv
sync""")
    ctx.m.reboot()
    for n, left in ((2, "1"), (3, "0")):
        b = ctx.power_on_expect_reset(BROKEN)
        words = _trial_words(ctx, b)
        if b.stage1_of() != "panic" or "panic" not in b.outcome():
            ctx.fail(f"boot {n} should be the panicking trial (generation 2): {b.summary()}")
        want = {"nixboot.entry": "nixos-generation-2", "nixboot.trial": "nixos-generation-2",
                "nixboot.tries": left}
        if any(words.get(k) != v for k, v in want.items()):
            ctx.fail(f"boot {n}: trial command line words {words}, expected {want}")
    b = ctx.power_on(BOOT)
    if b.stage1_of() != "good":
        ctx.fail(f"boot 4 should be back on generation 1 after 2 tries: {b.summary()}")
    words = _trial_words(ctx, b)
    if words.get("nixboot.entry") != "nixos-generation-1" or "nixboot.trial" in words:
        ctx.fail(f"boot 4: command line words {words}, expected a plain generation 1 boot")
    env = _guest_grubenv(ctx)
    if env.get("nixboot_tries") != "0" or env.get("nixboot_trial") != "nixos-generation-2":
        ctx.fail(f"boot 4: grubenv {env}: GRUB should have saved nixboot_tries=0")
    ctx.metrics["tries"] = "2->1->0"
    ctx.m.send("systemctl poweroff")
    ctx.m.wait_exit(90, "poweroff")
