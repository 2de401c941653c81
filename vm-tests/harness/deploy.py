"""The deploy scenarios (issue 12): `nixboot deploy` runs on the host, as a
deployer would, against the guest's real sshd over QEMU's user network (a
forward bound to 127.0.0.1), and drives a trial that waits for its confirm.

The harness only powers the machine on again whenever the guest resets
(QEMU runs with -no-reboot); everything else is the deployer's and the
target's. Each scenario then checks what the deployer reported against what
the target says from its backdoor shell, and records the time from arming to
the outcome the deployer reported (the `deploy=` figure of the PASS line)."""
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from .images import nixboot_build_dir
from .scenario import Ctx, describe_status, entry_of, generation_of, scenario
from .scenarios import BOOT, expect_bad, expect_good_default, expect_on, expect_unconfirmed, install, narrate_boot
from .util import REPO, program

CONFIRM = 60  # the target's window for the confirm (try --confirm-timeout)
WAIT = 480  # the deployer's --boot-timeout and --settle-timeout
DEPLOY_BOUND = 1500  # seconds the whole `nixboot deploy` may take in the harness
MAX_BOOTS = 4  # boots a deploy may cause before the harness calls it a loop


def deployer_key(ctx: Ctx) -> Path:
    """An ssh key pair for this scenario; the guest authorizes it for root."""
    key = ctx.workdir / "deployer-key"
    if not key.exists():
        subprocess.run(
            [program("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "nixboot-vm-deployer", "-f", str(key)],
            check=True,
        )
    pub = (key.with_suffix(".pub")).read_text().strip()
    ctx.sh(f"umask 077; mkdir -p /root/.ssh; echo '{pub}' > /root/.ssh/authorized_keys")
    return key


class Deploy:
    """One `nixboot --json deploy` on the host, its progress lines timed."""

    def __init__(self, ctx: Ctx, args: list):
        self.ctx = ctx
        key = deployer_key(ctx)
        ssh_options = (
            f"-p {ctx.ssh_port} -i {key} -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )
        self.cmd = [
            str(nixboot_build_dir() / "cli" / "nixboot"),
            "--json",
            "deploy",
            "--ssh-options",
            ssh_options,
            "--connect-timeout",
            "10",
            "--command-timeout",
            "90",
            "--poll-interval",
            "3",
            "--boot-timeout",
            str(WAIT),
            "--settle-timeout",
            str(WAIT),
            "--confirm-timeout",
            str(CONFIRM),
            *args,
            "root@127.0.0.1",
        ]
        self.lines: list = []  # (host time, progress line)
        self.proc = None
        self.log = ctx.logdir / "deploy.log"

    def start(self) -> None:
        self.ctx.say("deployer: " + " ".join(self.cmd[1:]))
        self.log.write_text(" ".join(self.cmd) + "\n")
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._out = []
        threading.Thread(target=lambda: self._out.append(self.proc.stdout.read()), daemon=True).start()
        threading.Thread(target=self._read_progress, daemon=True).start()

    def _read_progress(self) -> None:
        with open(self.log, "a") as f:
            for line in self.proc.stderr:
                self.lines.append((time.time(), line.rstrip("\n")))
                f.write(f"{time.strftime('%H:%M:%S')} {line}")
                f.flush()

    def said(self, pattern: str):
        rx = re.compile(pattern)
        return next((t for t, l in list(self.lines) if rx.search(l)), None)

    def kill(self) -> None:
        """SIGKILL to the deployer and its ssh children (its own session)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def drive(self, until=None) -> dict | None:
        """Runs the deploy to its end, powering the guest on again whenever it
        resets. until(self) -> True kills the deployer there (returns None).
        Otherwise returns the report, with `seconds` from arming to the end."""
        self.start()
        deadline = time.time() + DEPLOY_BOUND
        boots = len(self.ctx.m.boots)
        while self.proc.poll() is None:
            if until is not None and until(self):
                self.kill()
                self.ctx.say(f"deployer killed (SIGKILL) after: {self.lines[-1][1] if self.lines else '-'}")
                return None
            if not self.ctx.m.running():
                self.ctx.m.wait_exit(10)
                narrate_boot(self.ctx, self.ctx.m.boot)
                if len(self.ctx.m.boots) - boots >= MAX_BOOTS:
                    self.kill()
                    self.ctx.fail(f"the deploy made the guest reset {MAX_BOOTS} times; {self.tail()}")
                self.ctx.power_on_async()
            if time.time() > deadline:
                self.kill()
                self.ctx.fail(f"`nixboot deploy` did not end within {DEPLOY_BOUND}s; {self.tail()}")
            time.sleep(0.5)
        end = time.time()
        time.sleep(0.2)  # the reader threads drain the pipes
        out = "".join(self._out)
        with open(self.log, "a") as f:
            f.write(f"exit status {self.proc.returncode}\n{out}")
        try:
            report = json.loads(out)
        except ValueError:
            self.ctx.fail(
                f"`nixboot --json deploy` exited {self.proc.returncode} and printed no JSON: {out[-400:]!r}; {self.tail()}"
            )
        armed = self.said(r"arming generation")
        report["exit_status"] = self.proc.returncode
        report["seconds"] = round(end - armed) if armed else None
        target = (report.get("targets") or [{}])[0]
        self.ctx.say(
            f"deployer reported: {target.get('line')} (exit {self.proc.returncode}, {report['seconds']}s after arming)"
        )
        if armed:
            self.ctx.metrics["deploy"] = f"{report['seconds']}s"
        return report

    def tail(self) -> str:
        return "deployer said last: " + " | ".join(l for _, l in self.lines[-3:])


def target_of(ctx: Ctx, report: dict) -> dict:
    targets = report.get("targets") or []
    if len(targets) != 1:
        ctx.fail(f"the deploy report should have one target: {report}")
    return targets[0]


def expect_report(ctx: Ctx, report: dict, outcome: str, exit_status: int, line: str) -> dict:
    t = target_of(ctx, report)
    if t.get("outcome") != outcome or report["exit_status"] != exit_status or not re.search(line, t.get("line", "")):
        ctx.fail(
            f"the deployer should report {outcome!r} (exit {exit_status}, a line matching {line!r}); "
            f"it reported {t.get('outcome')!r}, exit {report['exit_status']}: {t.get('line')!r}"
        )
    return t


def settle_on(ctx: Ctx, generation: int, variant: str, what: str) -> dict:
    """The guest is up again after the deploy: its backdoor answers on this boot."""
    if ctx.m.boot.number > 1:
        ctx.m.wait_backdoor(BOOT)
    return expect_on(ctx, generation, variant, what)


def reachable_on(ctx: Ctx, key: Path, generation: int, what: str) -> None:
    """A new ssh connection from the host reaches the guest, its nixboot
    answers, and the system running is the generation's (/run/current-system:
    after a live trial the booted entry says nothing, and GRUB's adopted
    stock entry names none)."""
    cmd = [
        program("ssh"),
        "-p",
        str(ctx.ssh_port),
        "-i",
        str(key),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "root@127.0.0.1",
        "nixboot --json status >/dev/null && readlink -f /run/current-system "
        f"/nix/var/nix/profiles/system-{generation}-link",
    ]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        ctx.fail(f"{what}: ssh from the host did not answer within 90 s")
    if p.returncode != 0:
        ctx.fail(f"{what}: ssh from the host failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    running, wanted = (p.stdout.split() + ["", ""])[:2]
    if not running or running != wanted:
        ctx.fail(f"{what}: over ssh the guest runs {running or '?'}, expected generation {generation} ({wanted})")
    ctx.say(f"{what}: a new ssh connection from the host reaches generation {generation}")


def check(name: str, *args) -> str:
    return " ".join([str(REPO / "deploy-checks" / name), *args])


@scenario("d1", "deploy-healthy")
def deploy_healthy(ctx: Ctx):
    """A reboot trial of a healthy generation: it boots, passes its own checks,
    the deployer's ssh check passes, the deployer confirms: promoted. A plain
    reboot then boots it."""
    install(ctx, {1: "good", 2: "healthy"}, 2)
    d = Deploy(ctx, ["--reboot", "--check", check("ssh-reachable")])
    report = d.drive()
    t = expect_report(ctx, report, "promoted", 0, r"generation 2 promoted$")
    if t.get("previous") != 1 or not t.get("trial_id"):
        ctx.fail(f"the report should name the previous generation 1 and the trial: {t}")
    st = settle_on(ctx, 2, "healthy", "after the deploy")
    expect_good_default(ctx, st, 2, "after the deploy")
    ctx.m.reboot()
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_on(ctx, 2, "healthy", "a plain reboot after the deploy")
    expect_good_default(ctx, st, 2, "a plain reboot after the deploy")


@scenario("d2", "deploy-no-nic")
def deploy_no_nic(ctx: Ctx):
    """A reboot trial whose kernel has no NIC driver: it boots and passes its
    own checks, but nothing reaches it, so no confirm comes; the target marks
    it bad and returns to generation 1 by itself; the deployer reaches it
    there and reports the rollback."""
    install(ctx, {1: "good", 2: "nonic"}, 2)
    d = Deploy(ctx, ["--reboot", "--check", check("ssh-reachable")])
    report = d.drive()
    t = expect_report(ctx, report, "rolled back", 1, r"rolled back to 1: .*no confirmation from outside")
    trial = next((b for b in ctx.m.boots if b.stage1_of() == "nonic"), None)
    if trial is None or not trial.first(r"NIXBOOT-VM: no NIC driver"):
        ctx.fail("the trial boot of generation 2 (no NIC driver) never ran")
    st = settle_on(ctx, 1, "good", "after the unreachable trial")
    expect_bad(ctx, st, 2, "after the unreachable trial")
    expect_good_default(ctx, st, 1, "after the unreachable trial")
    reachable_on(ctx, ctx.workdir / "deployer-key", 1, "after the unreachable trial")
    ctx.say(f"reason on the target: {(entry_of(st, 2) or {}).get('reason')}; deployer: {t.get('detail')}")


@scenario("d3", "deploy-live-lockout")
def deploy_live_lockout(ctx: Ctx):
    """A live trial whose activation stops sshd: the deployer cannot reach the
    trial, sends nothing, and the target switches itself back to generation 1
    when the window closes (which starts sshd again); the deployer reports it."""
    install(ctx, {1: "good", 2: "nossh"}, 2)
    d = Deploy(ctx, ["--live", "--check", check("ssh-reachable")])
    report = d.drive()
    expect_report(ctx, report, "rolled back", 1, r"rolled back to 1: ")
    if len(ctx.m.boots) != 1:
        ctx.fail(f"a live trial must not reboot the machine: {ctx.boots_text()}")
    stc = ctx.sh("cat /var/lib/nixboot-vm/switch-to-configuration.log")
    if not re.search(r"nossh test", stc) or not re.search(r"-good test", stc.split("nossh test", 1)[-1]):
        ctx.fail(f"the live trial should have switched to generation 2 and back to 1: {stc}")
    st = ctx.status()
    if (entry_of(st, 2) or {}).get("state") == "good" or generation_of(st, st.get("default")) != 1:
        ctx.fail(f"after the reverted live trial generation 1 should stay the default: {describe_status(st)}")
    reachable_on(ctx, ctx.workdir / "deployer-key", 1, "after the reverted live trial")


@scenario("d4", "deploy-check-fails")
def deploy_check_fails(ctx: Ctx):
    """A reboot trial that the target finds healthy, but a deployer check fails
    (an HTTP port closed from outside): the deployer tells the target to fail
    the trial, it reboots into generation 1, the deployer reports why."""
    install(ctx, {1: "good", 2: "healthy"}, 2)
    d = Deploy(ctx, ["--reboot", "--check", check("ssh-reachable"), "--check", check("http-ok", str(ctx.http_port))])
    report = d.drive()
    expect_report(ctx, report, "rolled back", 1, r"rolled back to 1: deployer check http-ok \d+ failed")
    st = settle_on(ctx, 1, "good", "after the failed deployer check")
    bad = expect_bad(ctx, st, 2, "after the failed deployer check")
    if "deployer check http-ok" not in str(bad.get("reason")):
        ctx.fail(f"the target's bad verdict should carry the deployer's reason: {bad.get('reason')}")
    expect_good_default(ctx, st, 1, "after the failed deployer check")


@scenario("d5", "deploy-killed")
def deploy_killed(ctx: Ctx):
    """The deployer is killed while it waits for the trial: nobody confirms,
    and the target returns to generation 1 by itself."""
    install(ctx, {1: "good", 2: "healthy"}, 2)
    d = Deploy(ctx, ["--reboot", "--check", check("ssh-reachable")])
    d.drive(until=lambda d: d.said(r"waiting for the trial") is not None and len(ctx.m.boots) > 1)
    armed = d.said(r"arming generation")
    deadline = time.time() + BOOT + CONFIRM + 240
    while ctx.m.running() and time.time() < deadline:
        time.sleep(1)
    ctx.m.wait_exit(max(1, deadline - time.time()), "the unconfirmed trial to reboot the machine by itself")
    narrate_boot(ctx, ctx.m.boot)
    if ctx.m.boot.stage1_of() != "healthy":
        ctx.fail(f"the boot after the deployer was killed should have been the trial: {ctx.boots_text()}")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    expect_unconfirmed(ctx, 1, "good", 2, "after the deployer was killed")
    # No deployer reports here: the time from arming until the target is back
    # on generation 1 with 2 marked bad, as its status shows.
    if armed:
        ctx.metrics["reverted"] = f"{round(time.time() - armed)}s"
