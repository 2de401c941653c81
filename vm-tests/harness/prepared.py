"""Boot 1, done once per bootloader: the prepared machine.

Every scenario that installs nixboot starts the same way: the firmware boots
the stock entry of generation 1, and nixboot's package is put in place
(Ctx.provision_package, the bootloader's guest_setup). Under TCG that is
about a third of a short scenario. The prepared machine does it once per
bootloader, then saves the running guest (CPU, RAM, devices: a QEMU
migration to a file) with its disks and firmware variables as they are at
that moment. Each scenario then resumes that guest on its own copy-on-write
overlays of those disks (qemu-img backing files) and a copy of the
variables, at the backdoor shell of boot 1: the same machine, in the same
state, as a cold boot 1 would leave it. Everything after that, every
reboot and reset included, is the scenario's own.

If the prepared machine cannot be made, the scenarios boot cold (a note in
each scenario's log says why), so a fault here costs time, not coverage.
NIXBOOT_VM_PREPARED=0 turns it off."""
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .util import log


@dataclass
class Saved:
    state: Path  # the guest's saved state (QEMU migration stream)
    disks: dict  # tag ("boot", "root", "nix") -> qcow2 image, as the guest left it
    firmware_files: list  # e.g. OVMF_VARS.fd, copied into each scenario's directory
    console: list  # boot 1's console lines up to the save: (host time, text)


class PreparedMachine:
    """Makes the saved boot 1 of one bootloader on first use (thread-safe)."""

    def __init__(self, name: str, make_ctx, workdir: Path, logdir: Path):
        """make_ctx(workdir, logdir) -> a Ctx that boots cold (prepared=None)."""
        self.name = name
        self.make_ctx = make_ctx
        self.workdir = workdir
        self.logdir = logdir
        self._lock = threading.Lock()
        self._done = False
        self._saved: Saved | None = None
        self.error = ""

    @staticmethod
    def enabled() -> bool:
        return os.environ.get("NIXBOOT_VM_PREPARED", "1") != "0"

    def get(self) -> Saved | None:
        with self._lock:
            if not self._done:
                self._done = True
                try:
                    self._saved = self._make()
                except Exception as e:  # noqa: BLE001  (the scenarios boot cold, and say why)
                    self.error = " | ".join(l.strip() for l in str(e).splitlines() if l.strip())
                    log(f"{self.name}: no prepared machine, scenarios boot cold: {self.error}")
            return self._saved

    def _make(self) -> Saved:
        import time

        t0 = time.time()
        ctx = self.make_ctx(self.workdir, self.logdir)
        try:
            b = ctx.first_boot()
            ctx.sh("sync")
            state = self.workdir / "state"
            ctx.m.save_state(state)
        finally:
            ctx.m.close()
        firmware = [p for p in self.workdir.iterdir() if p.suffix == ".fd"]
        disks = {tag: self.workdir / f"{tag}.qcow2" for tag in ("boot", "root", "nix")}
        log(
            f"{self.name}: prepared machine saved in {time.time() - t0:.0f}s "
            f"(state {state.stat().st_size // (1 << 20)} MiB)"
        )
        return Saved(state, disks, firmware, list(b.lines))
