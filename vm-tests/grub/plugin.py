"""GRUB plug-ins for vm-tests/run (see vm-tests/README.md, "Plugging in a
bootloader"): `grub-efi` (GRUB x86_64-efi under OVMF) and `grub-bios` (GRUB
i386-pc under SeaBIOS), with real GRUB 2.06 from Debian's packages, on a FAT
/boot; `grub-bios-btrfs` and `grub-efi-btrfs`, the same on a btrfs /boot.

The boot disk (vm-tests/grub/grubvm.py) is MBR-partitioned, partition 1 is
FAT32 labelled ESP (the guest mounts LABEL=ESP on /boot), GRUB's prefix is
/grub on it: grub.cfg and grubenv live in /boot/grub/ and kernels in
/boot/kernels/ as the guest sees them. The btrfs plug-ins: partition 1 is
btrfs labelled ESP (BIOS), or partition 1 is a FAT ESP with only
EFI/BOOT/BOOTX64.EFI, left unmounted, and partition 2 the btrfs labelled ESP
that GRUB's prefix points into (EFI). Generation 1 is installed the way
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
  g4  grub-watchdog, g6 grub-counted: see below.
  g8  grub-unwritable-env: GRUB's own refusal of save_env on a real btrfs.
  8   unwritable-env: nixboot on a real btrfs /boot (unwritable_env below).
"""
import base64
import os
import re
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
from harness.bootloaders import MATRIX_FULL, Bootloader, register  # noqa: E402
from harness.scenario import Ctx, scenario  # noqa: E402
from harness.util import HarnessError, program  # noqa: E402

KERNEL_FILE = f"{images.KERNEL_NAME}-bzImage"  # like NixOS: <store hash>-<name>-bzImage

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


# Generation 1's entry is the pure stock one (no nixboot.entry=): nixboot's
# first `install` on GRUB learns what booted from init= on the command line
# (GrubBackend::read) and adopts generation 1, not the profile's never-booted
# current generation (G1). NIXBOOT_VM_GRUB_PURE_STOCK=0 adds
# nixboot.entry=nixos-generation-1 to it, as runs before that fix did.
PURE_STOCK = os.environ.get("NIXBOOT_VM_GRUB_PURE_STOCK", "1") == "1"


def stock_nixos_grub_cfg(generation1: str, initrd: str) -> str:
    """grub.cfg as NixOS's install-grub.pl leaves it with one generation
    (reduced to what matters here: header with next_entry/saved_entry,
    'NixOS - Default', the 'All configurations' submenu)."""
    params = " ".join(images.BASE_PARAMS + ([] if PURE_STOCK else ["nixboot.entry=nixos-generation-1"]))
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
    p = subprocess.run(
        [program("debugfs"), "-R", f"dump -p {path} {dest}", str(nix_img)], capture_output=True, text=True
    )
    if not dest.exists() or dest.stat().st_size == 0:
        raise HarnessError(f"{nix_img}: cannot read {path}: {p.stderr.strip()}")


# Which scenarios run where. By default every issue scenario runs on both
# firmwares: 1-5, 7, 9, and g6 (GRUB's counted mode: scenario 6 without a
# one-shot; the harness's own 6 asserts systemd-boot's sort-order arming).
# The unwritable-env scenarios need a boot dir GRUB cannot write, so they run
# on the btrfs plug-ins: 8 on both firmwares, g8 (GRUB alone) on BIOS.
# NIXBOOT_VM_GRUB_FULL=1 adds the reference-grub.cfg checks g0 (machinery)
# and g4 (watchdog), which 1-4 and g6 cover with nixboot's own grub.cfg.
FULL = os.environ.get("NIXBOOT_VM_GRUB_FULL") == "1"
ALL = {"1", "2", "3", "4", "5", "7", "9", "11", "g0", "g4", "g6"}
DEFAULT = ALL - {"g0", "g4", "11"}
BTRFS = {"grub-bios-btrfs": {"8", "g8"}, "grub-efi-btrfs": {"8"}}
# `nixboot deploy` against the guest's sshd (harness/deploy.py): GRUB EFI.
DEPLOY = {"d1", "d2", "d3", "d4", "d5"}


class _Grub(Bootloader):
    nixboot_name = "grub"
    firmware = "?"
    scenarios = ALL
    boot_fs = "fat"  # the boot dir's filesystem (the partition labelled ESP)
    esp_mb = 0  # EFI with a non-FAT boot dir: size of the separate FAT ESP
    # Byte offset of the boot dir's partition in the disk image (build_boot_image sets it).
    boot_part_offset = grubvm.PART_START_SECTOR * grubvm.SECTOR
    suite = None  # a Debian suite to take GRUB's modules from; None: this machine's

    def package(self) -> str:
        return "grub-efi-amd64-bin" if self.firmware == "efi" else "grub-pc-bin"

    def grub_dir(self) -> Path | None:
        """The module directory of the suite's GRUB (scripts/debian-package),
        None for this machine's. The image is assembled by this machine's
        grub-mkimage; what runs is the suite's kernel.img and modules."""
        if self.suite is None:
            return None
        from harness.bootloaders import debian_package

        where, version = debian_package(self.suite, self.package())
        self._version = f"GRUB {version}"
        platform = "x86_64-efi" if self.firmware == "efi" else "i386-pc"
        return where / "usr/lib/grub" / platform

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
            check = subprocess.run([program("grub-script-check"), str(cfg)], capture_output=True, text=True)
            if check.returncode != 0:
                raise HarnessError(f"stock grub.cfg: grub-script-check: {check.stdout}{check.stderr}")
            try:
                disk = grubvm.make_disk(
                    img,
                    self.firmware,
                    {
                        "/grub/grub.cfg": cfg,
                        f"/kernels/{KERNEL_FILE}": kern.vmlinuz,
                        f"/kernels/{initrd_file('good')}": initrd,
                    },
                    fs=self.boot_fs,
                    size_mb=256,
                    label="ESP",
                    bios_early_cfg=BIOS_EARLY_CFG,
                    esp_mb=self.esp_mb,
                    grub_dir=self.grub_dir(),
                )
            except grubvm.VmError as e:
                raise HarnessError(f"{self.name}: building the boot disk: {e}")
        self.boot_part_offset = disk.part_offset
        return img

    def guest_setup(self, ctx) -> None:
        """/boot mounted for sure (see MOUNT_BOOT), and no menu wait: every
        generation's nixboot.conf gets `grub-timeout = 0` (docs/grub.md),
        which saves 5 s of every boot of every scenario."""
        ctx.sh(MOUNT_BOOT, 90)
        ctx.sh(
            """set -e
for f in /nix/store/*-nixos-system-*/etc/nixboot/nixboot.conf; do
  grep -q '^grub-timeout' "$f" || echo 'grub-timeout = 0' >> "$f"
done"""
        )

    def loader_version(self) -> str:
        from harness.bootloaders import host_package_version

        return getattr(self, "_version", None) or f"GRUB {host_package_version(self.package())}"

    def disable_one_shot(self, ctx) -> None:
        """GRUB has no one-shot separate from counting: a trial armed with
        --tries N is GRUB's counted mode (grubenv nixboot_tries, decremented
        by GRUB's save_env before each boot). Nothing to disable."""


@register
class GrubEfi(_Grub):
    name = "grub-efi"
    firmware = "efi"
    scenarios = (ALL if FULL else DEFAULT) | DEPLOY

    def firmware_args(self, machine_dir: Path) -> list:
        vars_copy = machine_dir / "OVMF_VARS.fd"
        if not vars_copy.exists():
            shutil.copy2(grubvm.OVMF_VARS, vars_copy)
        return [
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={grubvm.OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,file={vars_copy}",
        ]


@register
class GrubBios(_Grub):
    name = "grub-bios"
    firmware = "bios"
    scenarios = (ALL if FULL else DEFAULT) | {"11"}

    def firmware_args(self, machine_dir: Path) -> list:
        return ["-bios", str(grubvm.SEABIOS)]


# Newer GRUB builds from Debian's other suites: Debian 13's 2.12 and
# unstable's 2.14, booted with the same guest.
@register
class GrubEfiTrixie(GrubEfi):
    name = "grub-efi-trixie"
    suite = "trixie"
    # NIXBOOT_VM_MATRIX_FULL=1 (harness/bootloaders.py): 1, 2, g6 (GRUB's 6), 7.
    scenarios = {"1", "2", "g6", "7"} if MATRIX_FULL else {"1"}


@register
class GrubEfiSid(GrubEfi):
    name = "grub-efi-sid"
    suite = "sid"
    # NIXBOOT_VM_MATRIX_FULL=1 (harness/bootloaders.py): every default GRUB scenario.
    scenarios = DEFAULT if MATRIX_FULL else {"1", "2"}


@register
class GrubBiosTrixie(GrubBios):
    name = "grub-bios-trixie"
    suite = "trixie"
    scenarios = {"1", "2", "g6", "7"} if MATRIX_FULL else set()


@register
class GrubBiosSid(GrubBios):
    name = "grub-bios-sid"
    suite = "sid"
    scenarios = DEFAULT if MATRIX_FULL else {"1"}


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
    ctx.sh(MOUNT_BOOT, 90)
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


def _refcfg(trial_variant: str) -> str:
    """The reference counting grub.cfg: generation 2 (trial_variant) and 1 (good)."""
    good, bad = images.store_path("good"), images.store_path(trial_variant)
    params = list(images.BASE_PARAMS)
    return refcfg.grub_cfg(
        [
            refcfg.MenuEntry(
                "nixos-generation-2",
                f"NixOS - Configuration 2 ({trial_variant})",
                f"/kernels/{KERNEL_FILE}",
                f"/kernels/{initrd_file(trial_variant)}",
                [f"init={bad}/init", *params],
            ),
            refcfg.MenuEntry(
                "nixos-generation-1",
                "NixOS - Configuration 1 (good)",
                f"/kernels/{KERNEL_FILE}",
                f"/kernels/{initrd_file('good')}",
                [f"init={good}/init", *params],
            ),
        ],
        default_id="nixos-generation-1",
    )


# /boot is a nofail fstab mount with a short device timeout: under TCG udev can
# be slower than that, and the backdoor may run before (or without) it. Make
# sure the boot partition itself is mounted before writing to it.
MOUNT_BOOT = """i=0
until mountpoint -q /boot; do
  mount /boot 2>/dev/null || mount LABEL=ESP /boot 2>/dev/null || true
  i=$((i + 1)); [ $i -lt 60 ] || { echo "/boot (LABEL=ESP) not mounted after 60 s"; exit 1; }
  mountpoint -q /boot || sleep 1
done
test -f /boot/grub/grub.cfg || { echo "/boot has no grub/grub.cfg: not the GRUB boot partition"; exit 1; }"""


def _armed_env(tries: int) -> bytes:
    return _grubenv_block(
        {"nixboot_trial": "nixos-generation-2", "nixboot_tries": str(tries), "nixboot_default": "nixos-generation-1"}
    )


def _arm_reference_trial(ctx: Ctx, variant: str, tries: int) -> None:
    """Boot 1 (stock grub.cfg, generation 1), then from inside the guest: the
    reference counting grub.cfg and a grubenv arming generation 2 with
    `tries`; reboot."""
    b = ctx.power_on(BOOT)
    if b.stage1_of() != "good":
        ctx.fail(f"boot 1 (stock grub.cfg) ran the initrd of {b.stage1_of()}, expected good")
    cfg, env = _refcfg(variant), _armed_env(tries)
    ctx.sh(
        f"""set -e
{MOUNT_BOOT}
cp {images.store_path(variant)}/initrd /boot/kernels/{initrd_file(variant)}
echo {base64.b64encode(cfg.encode()).decode()} | base64 -d > /boot/grub/grub.cfg.new
mv /boot/grub/grub.cfg.new /boot/grub/grub.cfg
echo {base64.b64encode(env).decode()} | base64 -d > /boot/grub/grubenv
sync"""
    )
    ctx.m.reboot()


def _expect_trial_boot(ctx: Ctx, variant: str, left: str, outcome: str):
    b = ctx.power_on_expect_reset(BROKEN)
    n = b.number
    if b.stage1_of() != variant or outcome not in b.outcome():
        ctx.fail(f"boot {n} should be the trial (generation 2, {variant}) ending in " f"'{outcome}': {b.summary()}")
    words = _trial_words(ctx, b)
    want = {"nixboot.entry": "nixos-generation-2", "nixboot.trial": "nixos-generation-2", "nixboot.tries": left}
    if any(words.get(k) != v for k, v in want.items()):
        ctx.fail(f"boot {n}: trial command line words {words}, expected {want}")
    return b


def _expect_good_boot(ctx: Ctx, tries_saved: str | None):
    b = ctx.power_on(BOOT)
    if b.stage1_of() != "good":
        ctx.fail(f"boot {b.number} should be back on generation 1: {b.summary()}")
    words = _trial_words(ctx, b)
    if words.get("nixboot.entry") != "nixos-generation-1" or "nixboot.trial" in words:
        ctx.fail(f"boot {b.number}: command line words {words}, expected a plain generation 1 boot")
    if tries_saved is not None:
        env = _guest_grubenv(ctx)
        if env.get("nixboot_tries") != tries_saved or env.get("nixboot_trial") != "nixos-generation-2":
            ctx.fail(f"boot {b.number}: grubenv {env}: GRUB should have saved " f"nixboot_tries={tries_saved}")
    return b


@scenario("g0", "grub-machinery")
def grub_machinery(ctx: Ctx):
    """Real GRUB counting with the harness's root, no nixboot binaries used:
    a hand-written counting grub.cfg (refcfg.py) and a grubenv arming
    generation 2 (panics in stage 1) with 2 tries: booted twice, each try
    saved by GRUB before the kernel, then generation 1."""
    _arm_reference_trial(ctx, "panic", 2)
    _expect_trial_boot(ctx, "panic", "1", "kernel panic")
    _expect_trial_boot(ctx, "panic", "0", "kernel panic")
    _expect_good_boot(ctx, "0")
    ctx.metrics["tries"] = "2->1->0"
    ctx.m.send("systemctl poweroff")
    ctx.m.wait_exit(90, "poweroff")


@scenario("g4", "grub-watchdog")
def grub_watchdog(ctx: Ctx):
    """A one-shot trial (1 try) whose stage 2 hangs: GRUB saves tries=0,
    nixboot-stage1 sees the GRUB trial on the command line and arms the
    i6300esb watchdog, the watchdog resets the hung guest, and GRUB boots
    generation 1. Uses the reference grub.cfg (no nixboot CLI)."""
    _arm_reference_trial(ctx, "hang", 1)
    b = _expect_trial_boot(ctx, "hang", "0", "watchdog")
    armed = b.first(r"nixboot-stage1: .*watchdog armed (\d+)s")
    if not armed:
        ctx.fail(f"boot {b.number}: nixboot-stage1 did not arm the watchdog on the trial boot")
    hang = b.first(r"stage 2 hangs")
    if hang:
        ctx.metrics["hang-to-reset"] = f"{(b.ended or 0) - hang[0]:.0f}s"
    _expect_good_boot(ctx, "0")
    ctx.m.send("systemctl poweroff")
    ctx.m.wait_exit(90, "poweroff")


@register
class GrubBiosBtrfs(GrubBios):
    """GRUB i386-pc whose /boot (grub.cfg, grubenv, kernels) is partition 1,
    btrfs: GRUB reads it but cannot save_env there (G5's case). Same stock
    generation 1 as grub-bios; the guest mounts it on /boot (btrfs.ko from
    the root image, images.ROOT_MODULES)."""

    name = "grub-bios-btrfs"
    boot_fs = "btrfs"
    scenarios = BTRFS["grub-bios-btrfs"]


@register
class GrubEfiBtrfs(GrubEfi):
    """GRUB x86_64-efi on a FAT ESP (partition 1, only EFI/BOOT/BOOTX64.EFI,
    not mounted in the guest, no grub-efi-dir) whose prefix points at
    partition 2, btrfs, mounted on /boot: GRUB cannot save_env there and
    nixboot has no ESP configured to move the env block to."""

    name = "grub-efi-btrfs"
    boot_fs = "btrfs"
    esp_mb = 40
    scenarios = BTRFS["grub-efi-btrfs"]


def _host_grubenv(ctx: Ctx) -> dict:
    """The boot disk's grubenv read on the host (machine off): qcow2 overlay
    -> raw copy -> btrfs restore -> grub-editenv list."""
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "boot.raw"
        grubvm.run(["qemu-img", "convert", "-O", "raw", str(ctx.workdir / "boot.qcow2"), str(raw)])
        return grubvm.Disk(
            image=raw, firmware=ctx.bl.firmware, fs=ctx.bl.boot_fs, part_offset=ctx.bl.boot_part_offset
        ).grubenv()


@scenario("g8", "grub-unwritable-env")
def grub_unwritable_env(ctx: Ctx):
    """GRUB's side of scenario 8, with the reference grub.cfg: the guest
    arms generation 2 (panics, 1 try) in a grubenv it writes on its btrfs
    /boot; save_env fails there, so GRUB never boots the armed trial (it
    could not count it): two boots, both generation 1, grubenv unchanged."""
    _arm_reference_trial(ctx, "panic", 1)
    for _ in range(2):
        b = _expect_good_boot(ctx, None)
        if not b.first(r"nixboot: save_env failed: not booting trial nixos-generation-2"):
            ctx.fail(f"boot {b.number}: GRUB did not report the failed save_env on btrfs")
        rec = b.first(r"run/nixboot/boot: (.*)")
        if rec and "trial=0" not in rec[1].group(1):
            ctx.fail(f"boot {b.number}: stage 1 recorded a trial: {rec[1].group(1)}")
        ctx.m.send("systemctl poweroff")
        ctx.m.wait_exit(90, "poweroff")
    env = _host_grubenv(ctx)
    if env.get("nixboot_tries") != "1":
        ctx.fail(f"grubenv on btrfs changed: {env} (GRUB cannot write there; expected tries=1)")
    ctx.metrics["save_env"] = "refused (btrfs)"


# ---------------------------------------------------------------------------
# Scenario 8 with nixboot: GRUB cannot write the boot dir, no ESP


@scenario("8", "unwritable-env")
def unwritable_env(ctx: Ctx):
    """/boot where GRUB cannot save_env and no ESP to move the env block to
    (docs/grub.md, "Where GRUB cannot write"): `nixboot try` must refuse and
    arm nothing; and since this /boot is a partition of its own, which
    nixboot-stage1 cannot reach in the initrd to count the tries, it refuses
    even with --accept-risk (G5); a reboot stays on generation 1. (Stage 1's
    counting where grubenv is on the root file system is covered by
    tests/boot/grub and tests/stage1-hook.)
    Runs on the btrfs plug-ins: /boot is a real btrfs, nixboot asks the real
    grub-probe (no grub-probe-boot answer injected), and GRUB's own refusal
    to save_env there is proven by g8."""
    from harness.scenarios import install, narrate_boot, expect_on

    install(ctx, {1: "good", 2: "hang"}, 2)
    fs = ctx.sh("grub-probe --target=fs /boot").strip()
    injected = ctx.sh("grep -h '^grub-probe' /nix/store/*-nixos-system-*/etc/nixboot/nixboot.conf " "|| true").strip()
    if fs != "btrfs" or injected:
        ctx.fail(
            f"boot {ctx.m.boot.number}: nixboot must see the real btrfs: grub-probe "
            f"--target=fs /boot said {fs!r}, probe answers in nixboot.conf: {injected!r}"
        )
    ctx.metrics["grub-probe"] = fs
    problems = []  # checked at the end, so one run shows both halves
    # The exit status is echoed by the command itself: Machine.execute reports
    # ${PIPESTATUS[0]} after an `echo`, i.e. always 0 (vm-tests/harness).
    _, out = ctx.m.execute('nixboot try 2; echo "NIXBOOT-VM-RC=$?"', 120)
    m = re.search(r"NIXBOOT-VM-RC=(\d+)\s*$", out)
    rc = int(m.group(1)) if m else -1
    out = out[: m.start()] if m else out
    ctx.say(f"nixboot try 2 with an unwritable env: exit {rc}: {out.strip()}")
    if rc != 1:
        problems.append(
            f"boot {ctx.m.boot.number}: `nixboot try 2` should refuse with exit 1 "
            f"where GRUB cannot write its env, exited {rc}: {out.strip()[-300:]}"
        )
    if "accept-risk" not in out or "btrfs" not in out:
        problems.append(
            f"boot {ctx.m.boot.number}: the refusal should name btrfs (what grub-probe "
            f"found) and --accept-risk: {out.strip()[-300:]}"
        )
    env = ctx.sh("grub-editenv /boot/grub/grubenv list")
    if "nixboot_trial=" in env:
        ctx.fail(f"boot {ctx.m.boot.number}: a refused try armed grubenv anyway: {env.strip()}")
    ctx.metrics["try"] = "refused"
    # With --accept-risk nixboot-stage1 would have to count the tries, but
    # this /boot is a partition of its own that the initrd never mounts: the
    # trial is refused outright (G5) rather than booted again and again.
    rc, out = ctx.m.execute("nixboot-try 2 --accept-risk --reboot", 120)
    ctx.say(f"nixboot try 2 --accept-risk with /boot out of stage 1's reach: exit {rc}: {out.strip()}")
    if rc != 1 or "file system of its own" not in out:
        problems.append(
            f"boot {ctx.m.boot.number}: `nixboot-try 2 --accept-risk` should refuse with exit 1 "
            f"(separate /boot), exited {rc}: {out.strip()[-300:]}"
        )
    env = ctx.sh("grub-editenv /boot/grub/grubenv list")
    if "nixboot_trial=" in env:
        ctx.fail(f"boot {ctx.m.boot.number}: a refused try armed grubenv anyway: {env.strip()}")
    ctx.m.reboot()
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    expect_on(ctx, 1, "good", "after both refused tries")
    if problems:
        ctx.fail("; ".join(problems))


@scenario("g6", "grub-counted")
def grub_counted(ctx: Ctx):
    """GRUB's counted mode with nixboot's own grub.cfg: `nixboot try 2
    --tries 3` on a generation that panics; real GRUB boots it exactly 3
    times, saving 2, 1, 0 before each kernel, then generation 1, which
    marks it bad."""
    from harness.scenarios import install, narrate_boot, expect_on, expect_bad

    install(ctx, {1: "good", 2: "panic"}, 2)
    ctx.nixboot("try 2 --tries 3")
    env = ctx.sh("grub-editenv /boot/grub/grubenv list")
    if "nixboot_trial=nixos-generation-2" not in env or "nixboot_tries=3" not in env:
        ctx.fail(f"boot {ctx.m.boot.number}: `nixboot try 2 --tries 3` left grubenv: {env.strip()}")
    ctx.m.reboot()
    for left in ("2", "1", "0"):
        b = ctx.power_on_expect_reset(BROKEN)
        narrate_boot(ctx, b)
        words = _trial_words(ctx, b)
        if b.stage1_of() != "panic" or words.get("nixboot.tries") != left:
            ctx.fail(
                f"boot {b.number} should be generation 2 with nixboot.tries={left} " f"(words {words}): {b.summary()}"
            )
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    env = ctx.sh("grub-editenv /boot/grub/grubenv list")
    st = expect_on(ctx, 1, "good", "after 3 failed tries")
    if "nixboot_tries=0" not in env and "nixboot_trial=" in env:
        ctx.fail(f"after 3 tries grubenv should say nixboot_tries=0: {env.strip()}")
    ctx.metrics["tries"] = "3->2->1->0"
    expect_bad(ctx, st, 2, "after 3 failed tries")
