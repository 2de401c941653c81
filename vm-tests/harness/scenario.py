"""Scenario registry and the per-scenario context (one machine, helpers that
speak nixboot inside the guest)."""
import json
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .images import NIXBOOT_PKG, store_path
from .machine import Boot, Machine
from .util import HarnessError, free_port, log, program

SCENARIOS: dict = {}  # number -> (slug, function)


def scenario(number: str, slug: str):
    """Registers a scenario function f(ctx) under its issue number."""

    def deco(f):
        SCENARIOS[number] = (slug, f)
        return f

    return deco


@dataclass
class Images:
    root: Path  # raw ext4, label nixroot (cached, shared)
    nix: Path  # raw ext4, label nixstore (this run)
    boot: Path  # raw boot disk of the bootloader (this run)
    kernel_version: str


class Ctx:
    """Everything one scenario run needs: its machine, its bootloader, its logs."""

    def __init__(self, name: str, bootloader, images: Images, workdir: Path, logdir: Path, prepared=None):
        """prepared: a PreparedMachine (harness/prepared.py) whose saved boot 1
        first_boot() resumes, or None to boot and provision every time."""
        self.name = name
        self.prepared = prepared
        self.bl = bootloader
        self.workdir = workdir
        self.logdir = logdir
        self.notes: list[str] = []
        self.metrics: dict = {}
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in workdir.glob("*.fd"):  # firmware variables of an earlier run
            stale.unlink()
        self.images = images
        self.saved = None  # what first_boot resumed, if anything
        # QEMU's user network, forwards bound to 127.0.0.1 only: the guest's
        # sshd (22) and port 80, where no guest listens (a port "closed from
        # outside" for a deployer check). Every machine has the NIC, so the
        # prepared machine's saved state fits every scenario.
        self.ssh_port = free_port()
        self.http_port = free_port()
        self.m = Machine(name, workdir, logdir, [])

    def _attach_disks(self, saved=None) -> None:
        """Before the first power-on: this scenario's copy-on-write overlays of
        the images (or of the prepared machine's disks) and firmware state."""
        if self.m.qemu_args:
            return
        if saved is not None:
            self.saved = saved
            for f in saved.firmware_files:  # the firmware variables as boot 1 left them
                shutil.copy2(f, self.workdir / f.name)
        disks = []
        images = self.images
        for src, tag in ((images.boot, "boot"), (images.root, "root"), (images.nix, "nix")):
            ov = self.workdir / f"{tag}.qcow2"
            ov.unlink(missing_ok=True)
            base, fmt = (saved.disks[tag], "qcow2") if saved is not None else (src, "raw")
            subprocess.run(
                [program("qemu-img"), "create", "-q", "-f", "qcow2", "-b", str(base), "-F", fmt, str(ov)], check=True
            )
            disks += ["-drive", f"file={ov},if={self.bl.disk_interface()},format=qcow2"]
        nic = (
            f"user,model=virtio-net-pci,restrict=on,"
            f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,hostfwd=tcp:127.0.0.1:{self.http_port}-:80"
        )
        self.m.qemu_args = self.bl.firmware_args(self.workdir) + disks + ["-nic", nic]

    # -- booting -----------------------------------------------------------
    def power_on(self, timeout: float = 240) -> Boot:
        """Starts a boot that must come up to the backdoor shell."""
        self._attach_disks()
        self.m.start()
        self.m.wait_backdoor(timeout)
        rc, out = self.m.execute("mountpoint -q /boot || { systemctl status boot.mount --no-pager; exit 1; }")
        if rc != 0:
            self.fail(
                f"boot {self.m.boot.number}: the boot disk (LABEL=ESP) is not mounted on /boot: "
                f"{out.strip()[-600:]}"
            )
        return self.m.boot

    def first_boot(self, timeout: float = 240) -> Boot:
        """Boot 1 on the stock generation 1 with nixboot's package in place
        (provision_package, the bootloader's guest_setup): resumed from the
        prepared machine when there is one, else booted and set up here."""
        saved = self.prepared.get() if self.prepared is not None and not self.m.boots else None
        if saved is not None:
            self._attach_disks(saved)
            self.m.start(incoming=saved.state, earlier_lines=saved.console)
            self.m.wait_resumed(timeout)
            self.say(f"boot 1 resumed where the prepared {self.bl.name} machine was saved")
            return self.m.boot
        b = self.power_on(timeout)
        if b.stage1_of() != "good":
            self.fail(f"boot 1 ran the initrd of {b.stage1_of()}, expected generation 1")
        self.provision_package()
        self.bl.guest_setup(self)
        return b

    def power_on_async(self) -> Boot:
        """Starts a boot and returns at once (the deploy scenarios: the
        deployer on the host, not the harness, waits for the guest)."""
        self._attach_disks()
        return self.m.start()

    def power_on_expect_reset(self, timeout: float = 180) -> Boot:
        """Starts a boot that must end by itself (panic, watchdog, reboot)."""
        self._attach_disks()
        self.m.start()
        return self.m.wait_exit(timeout, "the broken boot to end by itself")

    narrate = None  # the demo sets a callable that prints each step

    def say(self, text: str) -> None:
        """Records a step; the demo prints it, the test run logs it."""
        self.notes.append(text)
        if self.narrate:
            self.narrate(text)
        else:
            log(f"{self.name}: {text}")

    def boots_text(self) -> str:
        return "; ".join(b.summary() for b in self.m.boots)

    def fail(self, what: str):
        raise HarnessError(f"{what} [boots: {self.boots_text()}]")

    # -- the guest -----------------------------------------------------------
    def sh(self, cmd: str, timeout: float = 60) -> str:
        return self.m.succeed(cmd, timeout)

    def nixboot(self, args: str, timeout: float = 120, ok: bool = True) -> tuple[int, str]:
        rc, out = self.m.execute(f"nixboot {args}", timeout)
        if ok and rc != 0:
            self.fail(f"boot {self.m.boot.number}: `nixboot {args}` exited {rc}: {out.strip()[-1200:]}")
        return rc, out

    def status(self) -> dict:
        rc, out = self.m.execute("nixboot --json status", 60)
        if rc != 0:
            self.fail(f"boot {self.m.boot.number}: `nixboot --json status` exited {rc}: {out.strip()[-800:]}")
        try:
            return json.loads(out)
        except ValueError as e:
            self.fail(f"boot {self.m.boot.number}: `nixboot --json status` is not JSON ({e}): {out[:500]}")

    def journal(self) -> list:
        out = self.sh("cat /var/lib/nixboot/journal 2>/dev/null || true")
        events = []
        for line in out.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                self.fail(f"boot {self.m.boot.number}: journal line is not JSON: {line[:200]}")
        return events

    def entries(self) -> list:
        """File names under /boot/loader/entries (systemd-boot)."""
        return sorted(self.sh("ls /boot/loader/entries/").split())

    def efivar(self, name: str) -> str:
        return self.sh(
            f"f=/sys/firmware/efi/efivars/{name}-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f; "
            f"[ -e $f ] && tail -c +5 $f | tr -d '\\000' || true"
        ).strip()

    def provision_package(self) -> None:
        """Installs nixboot the way the NixOS module would: binaries, units
        enabled (the system profile is laid out by link_profile)."""
        pkg = f"/nix/store/{NIXBOOT_PKG}"
        self.sh(
            f"""set -e
ln -sfn {pkg}/bin/nixboot /usr/local/bin/nixboot
ln -sfn {pkg}/bin/nixboot-try /usr/local/bin/nixboot-try
[ -e {pkg}/bin/nixboot-stage1 ] && ln -sfn {pkg}/bin/nixboot-stage1 /usr/local/bin/nixboot-stage1
mkdir -p /nix/var/nix/profiles /var/lib/nixboot
for u in {pkg}/lib/systemd/system/*; do
  [ -e "$u" ] || continue
  cp "$u" /etc/systemd/system/
  sed -i 's|/usr/bin/nixboot|/usr/local/bin/nixboot|g; s|/usr/local/bin/nixboot|{pkg}/bin/nixboot|g' /etc/systemd/system/$(basename $u)
done
systemctl daemon-reload
for u in {pkg}/lib/systemd/system/*; do
  [ -e "$u" ] || continue
  grep -q '^\\[Install\\]' "$u" && systemctl enable $(basename "$u")
done
true""",
            # daemon-reload and the enables take seconds on an idle guest, a
            # minute or more when two VMs share the cores with compile jobs.
            180,
        )

    def link_profile(self, generations: dict, profile: int) -> None:
        """Lays out the system profile: {N: variant}, profile -> system-N-link."""
        links = " && ".join(
            f"ln -sfn {store_path(v)} /nix/var/nix/profiles/system-{n}-link" for n, v in sorted(generations.items())
        )
        self.sh(f"set -e; {links} && ln -sfn system-{profile}-link /nix/var/nix/profiles/system")


# -- reading nixboot's view --------------------------------------------------


def entry_of(status: dict, generation: int) -> dict | None:
    """The (non-specialisation) entry of a generation in `nixboot --json status`."""
    for e in status.get("entries", []):
        if e.get("generation") == generation and not e.get("specialisation"):
            return e
    return None


def generation_of(status: dict, entry_id) -> int | None:
    if entry_id is None:
        return None
    for e in status.get("entries", []):
        if e.get("id") == entry_id:
            return e.get("generation")
    m = __import__("re").match(r"nixos-generation-(\d+)", entry_id)
    return int(m.group(1)) if m else None


def describe_status(status: dict) -> str:
    ents = ", ".join(
        f"{e.get('id')}={e.get('state')}" + (f"({e.get('tries_left')} left)" if e.get("state") == "trial" else "")
        for e in status.get("entries", [])
    )
    return (
        f"booted={status.get('booted')} default={status.get('default')} "
        f"armed={status.get('armed')} entries=[{ents}]"
    )
