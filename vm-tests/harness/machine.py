"""One test machine: QEMU (TCG) started once per boot, a serial console log per
boot, a backdoor shell on the second serial port, and QMP for exit reasons.

QEMU runs with -no-reboot, so every guest reset (reboot, panic, watchdog)
ends the process: one process = one boot, one log file, and the driver
decides when to power the machine on again. Every wait is bounded.
"""
import base64
import json
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .util import HarnessError, log, program, run


@dataclass
class Boot:
    """What one boot did, as seen on its serial console and by QMP."""

    number: int
    log: Path
    started: float
    lines: list = field(default_factory=list)  # (host time, text)
    events: list = field(default_factory=list)  # QMP events
    ended: float | None = None
    end_reason: str = ""
    killed: bool = False

    def first(self, pattern):
        """(time, match) of the first console line matching pattern, or None."""
        rx = re.compile(pattern)
        for t, line in list(self.lines):
            m = rx.search(line)
            if m:
                return t, m
        return None

    def entry(self) -> str:
        m = self.first(r"LoaderEntrySelected=(\S*) LoaderBootCountPath=(\S*)")
        if m:
            sel, path = m[1].group(1), m[1].group(2)
            return sel + (f" (counter now {path.rsplit(chr(92), 1)[-1]})" if path else "")
        m = self.first(r"nixboot\.entry=(\S+)")
        return m[1].group(1) if m else "?"

    def stage1_of(self) -> str:
        m = self.first(r"NIXBOOT-VM: stage 1 of (\S+)")
        return m[1].group(1) if m else "?"

    def outcome(self) -> str:
        """How the boot ended, from QMP events and the last kernel words."""
        if self.killed:
            return "power cut by the test"
        if any(e.get("event") == "WATCHDOG" for e in self.events):
            return "reset by the i6300esb watchdog"
        text = "\n".join(l for _, l in self.lines)
        if "Kernel panic - not syncing" in text:
            m = re.search(r"Kernel panic - not syncing: ([^\n]*)", text)
            return f"kernel panic ({m.group(1).strip()})"
        if "reboot: Restarting system" in text:
            return "rebooted"
        if "reboot: Power down" in text:
            return "powered off"
        if self.end_reason:
            return self.end_reason
        return "still running" if self.ended is None else "ended"

    def verdict(self) -> str:
        """nixboot-check's verdict as forwarded from the journal to the console."""
        m = self.first(r"nixboot\[\d+\]: (verdict on \S+: \w+)")
        if m:
            return m[1].group(1)
        m = self.first(r"nixboot\[\d+\]: (\S+ is not a trial)")
        return m[1].group(1) if m else "no verdict seen"

    def summary(self) -> str:
        return (
            f"boot {self.number}: entry {self.entry()}, initrd of {self.stage1_of()}, "
            f"{self.verdict()}, {self.outcome()}"
        )

    def last_words(self, n: int = 2) -> str:
        """The last n non-empty console lines, for a timeout's error line."""
        said = [l.strip() for _, l in list(self.lines) if l.strip()][-n:]
        if not said:
            return "the guest printed nothing on the console"
        return "the guest printed last: " + " | ".join(repr(l[:160]) for l in said)


class Machine:
    """A VM of one scenario. Disks and firmware come from the bootloader plug-in."""

    def __init__(self, name: str, workdir: Path, logdir: Path, qemu_args: list, memory: int = 768):
        self.name = name
        self.workdir = workdir
        self.logdir = logdir
        self.qemu_args = qemu_args
        self.memory = memory
        self.boots: list[Boot] = []
        self.proc = None
        self._bd_sock = None
        self._bd_buf = b""
        self._bd_cond = threading.Condition()
        self._seq = 0
        logdir.mkdir(parents=True, exist_ok=True)

    # -- power ---------------------------------------------------------------
    @property
    def boot(self) -> Boot:
        return self.boots[-1]

    def start(self, incoming: Path | None = None, earlier_lines: list | None = None) -> Boot:
        """Powers the machine on: one new QEMU process, one new boot log.
        incoming: a state file saved by save_state(); the machine resumes
        there (its disks must be overlays of the ones it was saved with) and
        earlier_lines are the console lines of that boot before the save."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError(f"{self.name}: start while boot {self.boot.number} is still running")
        n = len(self.boots) + 1
        logf = self.logdir / f"boot-{n}.log"
        logf.unlink(missing_ok=True)
        logf.touch()
        bd = self.workdir / "backdoor.sock"
        qmp = self.workdir / "qmp.sock"
        self._qmp_cmd = self.workdir / "qmp-cmd.sock"
        for s in (bd, qmp, self._qmp_cmd):
            s.unlink(missing_ok=True)
        cmd = [
            program("qemu-system-x86_64"),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-machine",
            "q35",
            "-m",
            str(self.memory),
            "-smp",
            "1",
            "-no-reboot",
            "-device",
            "i6300esb",
            "-action",
            "watchdog=reset",
            "-serial",
            f"file:{logf}",
            "-chardev",
            f"socket,id=bd,path={bd},server=on,wait=off",
            "-serial",
            "chardev:bd",
            "-qmp",
            f"unix:{qmp},server=on,wait=off",
            "-qmp",
            f"unix:{self._qmp_cmd},server=on,wait=off",
            *self.qemu_args,
        ]
        if incoming is not None:
            cmd += ["-incoming", f"exec:cat {shlex.quote(str(incoming))}"]
        boot = Boot(n, logf, time.time())
        boot.lines.extend(earlier_lines or [])
        self.boots.append(boot)
        (self.logdir / f"boot-{n}.cmd").write_text(shlex.join(cmd) + "\n")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.logdir / f"boot-{n}.qemu-stderr", "w"),
        )
        self._bd_buf = b""
        threading.Thread(target=self._tail, args=(boot, self.proc), daemon=True).start()
        threading.Thread(target=self._qmp, args=(boot, qmp, self.proc), daemon=True).start()
        self._connect_backdoor(bd)
        return boot

    def _connect_backdoor(self, path: Path):
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(path))
                self._bd_sock = s
                threading.Thread(target=self._bd_reader, args=(s,), daemon=True).start()
                return
            except OSError:
                s.close()
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        err = (self.logdir / f"boot-{self.boot.number}.qemu-stderr").read_text()
        raise HarnessError(f"{self.name}: QEMU did not start (backdoor socket {path}): {err.strip()}")

    def _bd_reader(self, s):
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            with self._bd_cond:
                if not data:
                    self._bd_cond.notify_all()
                    return
                self._bd_buf += data
                self._bd_cond.notify_all()

    def _tail(self, boot: Boot, proc):
        with open(boot.log, "rb") as f:
            partial = b""
            while True:
                chunk = f.read()
                if chunk:
                    partial += chunk
                    *done, partial = partial.split(b"\n")
                    now = time.time()
                    for l in done:
                        boot.lines.append((now, l.decode("utf-8", "replace").rstrip("\r")))
                elif proc.poll() is not None:
                    if partial:
                        boot.lines.append((time.time(), partial.decode("utf-8", "replace")))
                    if boot.ended is None:
                        boot.ended = time.time()
                    return
                else:
                    time.sleep(0.05)

    def _qmp(self, boot: Boot, path: Path, proc):
        deadline = time.time() + 10
        s = None
        while time.time() < deadline and proc.poll() is None:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(path))
                break
            except OSError:
                s.close()
                s = None
                time.sleep(0.05)
        if s is None:
            return
        f = s.makefile("rwb")
        try:
            f.readline()
            f.write(b'{"execute":"qmp_capabilities"}\n')
            f.flush()
            for line in f:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "event" in msg:
                    boot.events.append(msg)
                    if msg["event"] == "SHUTDOWN":
                        boot.end_reason = msg.get("data", {}).get("reason", "")
        except OSError:
            pass

    def qmp(self, command: str, arguments: dict | None = None, timeout: float = 30) -> dict:
        """Runs one QMP command on the command monitor; returns its "return"."""
        deadline = time.time() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self._qmp_cmd))
            f = s.makefile("rwb")
            f.readline()  # the greeting
            for cmd in ({"execute": "qmp_capabilities"}, {"execute": command, "arguments": arguments or {}}):
                f.write(json.dumps(cmd).encode() + b"\n")
                f.flush()
                while True:
                    if time.time() > deadline:
                        raise HarnessError(f"{self.name}: QMP {command} did not answer within {timeout:.0f}s")
                    line = f.readline()
                    if not line:
                        raise HarnessError(f"{self.name}: QMP closed the connection during {command}")
                    msg = json.loads(line)
                    if "error" in msg:
                        raise HarnessError(f"{self.name}: QMP {command}: {msg['error'].get('desc', msg['error'])}")
                    if "return" in msg:
                        break
            return msg["return"]

    def save_state(self, path: Path, timeout: float = 300) -> None:
        """Stops the guest, writes its whole state (CPU, RAM, devices) to path
        and ends the QEMU process; the disks keep what the guest had written.
        start(incoming=path) on overlays of those disks resumes it."""
        path.unlink(missing_ok=True)
        self.qmp("stop")
        self.qmp("migrate", {"uri": f"exec:cat > {shlex.quote(str(path))}"})
        deadline = time.time() + timeout
        while True:
            st = self.qmp("query-migrate").get("status")
            if st == "completed":
                break
            if st in ("failed", "cancelled") or time.time() > deadline:
                raise HarnessError(f"{self.name}: saving the machine's state to {path}: migration {st}")
            time.sleep(0.2)
        self.qmp("quit")
        self.wait_exit(60, "QEMU to quit after saving the machine's state")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float, what: str = "the guest to reset or power off") -> Boot:
        """Waits for this boot's QEMU to end; a guest that does not is a failure."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.power_cut()
            raise HarnessError(
                f"{self.name}: {self.boot.summary()}; timed out after {timeout:.0f}s "
                f"({self.boot.last_words()}) "
                f"waiting for {what}"
            )
        self._settle()
        return self.boot

    def _settle(self):
        deadline = time.time() + 3
        while self.boot.ended is None and time.time() < deadline:
            time.sleep(0.05)

    def power_cut(self):
        """Pulls the plug: SIGKILL, nothing flushed."""
        if self.running():
            self.boot.killed = True
            self.proc.kill()
            self.proc.wait()
        self._settle()

    def close(self):
        self.power_cut()

    # -- console ---------------------------------------------------------------
    def wait_console(self, pattern: str, timeout: float, what: str | None = None):
        """Waits for a console line matching pattern in the current boot."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        seen = 0
        while True:
            lines = self.boot.lines
            for t, line in lines[seen:]:
                m = rx.search(line)
                if m:
                    return t, m
            seen = len(lines)
            if not self.running() and self.boot.ended is not None and seen == len(self.boot.lines):
                raise HarnessError(
                    f"{self.name}: {self.boot.summary()}; ended before "
                    f"{what or repr(pattern)} appeared on the console"
                )
            if time.time() > deadline:
                raise HarnessError(
                    f"{self.name}: {self.boot.summary()}; no {what or repr(pattern)} "
                    f"on the console within {timeout:.0f}s; {self.boot.last_words()}"
                )
            time.sleep(0.1)

    # -- backdoor ---------------------------------------------------------------
    def wait_resumed(self, timeout: float = 120) -> None:
        """Lets a machine started with incoming= run once its state is loaded
        (it was saved stopped, so it arrives stopped) and waits until its
        backdoor shell answers."""
        deadline = time.time() + timeout
        while True:
            st = self.qmp("query-status").get("status")
            if st != "inmigrate":
                break
            if time.time() > deadline or not self.running():
                raise HarnessError(f"{self.name}: the saved state was not loaded within {timeout:.0f}s ({st})")
            time.sleep(0.2)
        if st != "running":
            self.qmp("cont")
        rc, out = self.execute("true", timeout)
        if rc != 0:
            raise HarnessError(f"{self.name}: the resumed machine's backdoor shell answered {rc}: {out.strip()}")

    def wait_backdoor(self, timeout: float = 240) -> None:
        """Waits until the guest's backdoor shell is up (systemd reached sysinit)."""
        deadline = time.time() + timeout
        with self._bd_cond:
            while b"NIXBOOT-VM-BACKDOOR-READY" not in self._bd_buf:
                left = deadline - time.time()
                if not self.running():
                    raise HarnessError(
                        f"{self.name}: {self.boot.summary()}; the guest ended before " f"its backdoor shell came up"
                    )
                if left <= 0:
                    raise HarnessError(
                        f"{self.name}: {self.boot.summary()}; backdoor shell not up "
                        f"within {timeout:.0f}s; {self.boot.last_words()}"
                    )
                self._bd_cond.wait(min(left, 0.5))
            i = self._bd_buf.index(b"NIXBOOT-VM-BACKDOOR-READY")
            nl = self._bd_buf.find(b"\n", i)
            while nl < 0:
                self._bd_cond.wait(0.5)
                nl = self._bd_buf.find(b"\n", i)
            self._bd_buf = self._bd_buf[nl + 1 :]

    def execute(self, cmd: str, timeout: float = 60, may_reset: bool = False) -> tuple[int, str]:
        """Runs cmd with bash in the guest; returns (exit status, stdout+stderr).
        may_reset: the command may end the boot (e.g. reboots); then (-1, "")."""
        self._seq += 1
        tag = f"__NIXBOOT_VM_RC_{self._seq}__"
        b64 = base64.b64encode(cmd.encode()).decode()
        # PIPESTATUS must be read right after the pipeline: the `echo` that
        # ends the base64 line would reset it (every command read as 0).
        line = (
            f'bash -c "$(echo {b64} | base64 -d)" </dev/null 2>&1 | base64 -w0; '
            f"__rc=${{PIPESTATUS[0]}}; echo; echo {tag} $__rc\n"
        )
        try:
            self._bd_sock.sendall(line.encode())
        except OSError as e:
            raise HarnessError(f"{self.name}: boot {self.boot.number}: backdoor gone ({e}) " f"running: {cmd}")
        rx = re.compile(rb"([A-Za-z0-9+/=]*)\r?\n" + tag.encode() + rb" (\d+)\r?\n")
        deadline = time.time() + timeout
        with self._bd_cond:
            while True:
                m = rx.search(self._bd_buf)
                if m:
                    self._bd_buf = self._bd_buf[m.end() :]
                    return int(m.group(2)), base64.b64decode(m.group(1)).decode("utf-8", "replace")
                left = deadline - time.time()
                if may_reset and not self.running():
                    return -1, ""
                if left <= 0 or not self.running():
                    why = "timed out" if left <= 0 else "the guest went away"
                    raise HarnessError(
                        f"{self.name}: {self.boot.summary()}; {why} after "
                        f"{timeout:.0f}s running in the guest: {cmd}; "
                        f"{self.boot.last_words()}"
                    )
                self._bd_cond.wait(min(left, 0.5))

    def succeed(self, cmd: str, timeout: float = 60) -> str:
        rc, out = self.execute(cmd, timeout)
        if rc != 0:
            raise HarnessError(f"{self.name}: boot {self.boot.number}: `{cmd}` exited {rc}: " f"{out.strip()[-1500:]}")
        return out

    def fail(self, cmd: str, timeout: float = 60) -> tuple[int, str]:
        rc, out = self.execute(cmd, timeout)
        if rc == 0:
            raise HarnessError(
                f"{self.name}: boot {self.boot.number}: `{cmd}` succeeded but "
                f"should have failed: {out.strip()[-500:]}"
            )
        return rc, out

    def send(self, cmd: str) -> None:
        """Starts cmd in the guest without waiting (e.g. a reboot)."""
        self._bd_sock.sendall(f"( {cmd} ) </dev/null >/dev/null 2>&1 &\n".encode())

    def reboot(self, timeout: float = 120) -> Boot:
        """Asks the guest to reboot and waits for the reset (the next boot is start())."""
        self.send("systemctl reboot")
        return self.wait_exit(timeout, "systemctl reboot to reset the guest")
