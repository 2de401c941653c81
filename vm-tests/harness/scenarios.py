"""The scenarios of issue 5, written once for every bootloader plug-in.

Every scenario starts from generation 1 installed the stock-NixOS way, boots
it, installs nixboot in the guest (provision), and drives the real nixboot
binaries from the backdoor shell. Assertions read `nixboot status --json`,
the journal, and each boot's serial log (which entry, whose initrd, how it
ended)."""
import json
import re
import time

from .images import QUOTED_PAIRS, kernel_cmdline_pairs, store_path
from .scenario import Ctx, describe_status, entry_of, generation_of, scenario

BOOT = 240  # seconds for a boot to reach the backdoor shell (TCG)
BROKEN = 180  # seconds for a broken boot to end by itself
SETTLE = 300  # seconds for systemd (and nixboot-check) to finish a boot


# -- steps shared by the scenarios ----------------------------------------------


# What is still starting while a trial boot waits for its confirm: nixboot
# check --until-verdict holds boot-complete.target (and systemd-bless-boot
# after it) until the trial is confirmed or reverted.
CONFIRM_HOLDS = "nixboot-check.service boot-complete.target systemd-bless-boot.service"


def settle(ctx: Ctx) -> str:
    """Waits until the boot's job queue is empty (nixboot-check has run), or
    until all that is left is nixboot-check holding boot-complete.target for
    a trial that waits for its confirm (STATE/live: kind=reboot,
    status=running)."""
    probe = (
        f"for i in $(seq {SETTLE // 2}); do"
        " s=$(systemctl is-system-running);"
        ' case "$s" in running|degraded) echo "$s"; exit 0;; esac;'
        " jobs=$(systemctl list-jobs --no-legend --plain 2>/dev/null | awk '{print $2}' | sort -u);"
        f' left=$(for j in $jobs; do case " {CONFIRM_HOLDS} " in *" $j "*) ;; *) echo "$j";; esac; done);'
        ' if [ -n "$jobs" ] && [ -z "$left" ] && grep -qx kind=reboot /var/lib/nixboot/live 2>/dev/null'
        " && grep -qx status=running /var/lib/nixboot/live; then echo awaiting-confirm; exit 0; fi;"
        " sleep 2; done; systemctl is-system-running"
    )
    rc, out = ctx.m.execute(probe, SETTLE + 30)
    state = out.strip().splitlines()[-1] if out.strip() else "?"
    if state not in ("running", "degraded", "awaiting-confirm"):
        ctx.fail(f"boot {ctx.m.boot.number}: system did not finish booting: {state}")
    return state


def check_log(ctx: Ctx) -> str:
    return ctx.sh("journalctl -b -o cat -u nixboot-check.service --no-pager 2>&1 | tail -n 30 || true")


def install(ctx: Ctx, generations: dict, profile: int, prepare=None) -> dict:
    """Boot 1 on the stock generation 1 with nixboot's package (Ctx.first_boot);
    the system profile; prepare(ctx) if given; `nixboot install`."""
    b = ctx.first_boot(BOOT)
    ctx.say(f"boot {b.number}: firmware booted {b.entry()} (stock NixOS entry of generation 1)")
    if b.stage1_of() != "good":
        ctx.fail(f"boot 1 ran the initrd of {b.stage1_of()}, expected generation 1")
    ctx.link_profile(generations, profile)
    if prepare:
        prepare(ctx)
    _, out = ctx.nixboot("install")
    ctx.say(f"nixboot install: {out.strip()}")
    st = ctx.status()
    e1 = entry_of(st, 1)
    if not e1 or e1.get("state") != "good":
        ctx.fail(f"after install generation 1 should be good: {describe_status(st)}")
    if generation_of(st, st.get("default")) != 1:
        ctx.fail(f"after install the default should be generation 1 (G1): {describe_status(st)}")
    for n in generations:
        if not entry_of(st, n):
            ctx.fail(f"after install generation {n} has no entry: {describe_status(st)}")
    return st


def arm_and_reboot(ctx: Ctx, args: str) -> str:
    """Runs a try that reboots by itself (`nixboot-try N --reboot`)."""
    rc, out = ctx.m.execute(f"nixboot-try {args} 2>&1 | tee /dev/console", 120, may_reset=True)
    if rc > 0:
        ctx.fail(f"boot {ctx.m.boot.number}: `nixboot-try {args}` exited {rc}: {out.strip()[-800:]}")
    ctx.say(f"nixboot-try {args}: {out.strip() or '(rebooting)'}")
    ctx.m.wait_exit(120, f"`nixboot-try {args}` to reboot the machine")
    return out


def expect_on(ctx: Ctx, generation: int, variant: str, what: str) -> dict:
    """The running boot must be `variant`'s generation and settle; returns status."""
    b = ctx.m.boot
    if b.stage1_of() != variant:
        ctx.fail(
            f"{what}: boot {b.number} ran the initrd of {b.stage1_of()}, expected "
            f"generation {generation} ({variant})"
        )
    settle(ctx)
    st = ctx.status()
    if generation_of(st, st.get("booted")) != generation:
        ctx.fail(
            f"{what}: nixboot status says booted {st.get('booted')}, expected generation "
            f"{generation}: {describe_status(st)}"
        )
    return st


def expect_bad(ctx: Ctx, st: dict, generation: int, what: str) -> dict:
    e = entry_of(st, generation)
    if not e or e.get("state") != "bad":
        ctx.fail(
            f"{what}: generation {generation} should be listed bad: {describe_status(st)}; "
            f"nixboot-check said: {check_log(ctx)[-800:]}"
        )
    if generation_of(st, st.get("default")) == generation:
        ctx.fail(f"{what}: the bad generation {generation} is the default (G1): {describe_status(st)}")
    journal = ctx.journal()
    bad = [j for j in journal if j.get("event") == "bad" and j.get("generation") == generation]
    if not bad:
        seen = "; ".join(f"{j.get('event')} gen {j.get('generation')}: {j.get('reason')}" for j in journal)
        ctx.fail(
            f"{what}: the journal has no 'bad' event for generation {generation} "
            f"(journal: {seen or 'empty'}); nixboot-check said: {check_log(ctx)[-600:]}"
        )
    if not str(bad[-1].get("reason", "")).strip():
        ctx.fail(f"{what}: the journal's 'bad' event for generation {generation} gives no reason")
    ctx.say(f"journal: generation {generation} bad: {bad[-1].get('reason')}")
    return bad[-1]


def expect_rolled_back(ctx: Ctx, st: dict, generation: int, what: str) -> None:
    """The fallback boot says it rolled back and reached nixboot-rolled-back.target."""
    rb = st.get("rolled_back") or {}
    if rb.get("generation") != generation:
        ctx.fail(f"{what}: nixboot status should say generation {generation} was rolled back: {st.get('rolled_back')}")
    rc, out = ctx.m.execute(
        "for i in 1 2 3 4 5 6 7 8 9 10; do systemctl is-active nixboot-rolled-back.target && exit 0; sleep 1; done;"
        " exit 1",
        30,
    )
    if rc != 0:
        ctx.fail(f"{what}: nixboot-rolled-back.target is not active after the rollback ({out.strip()[-200:]})")
    ctx.say(f"rolled back: {rb.get('summary')}; nixboot-rolled-back.target active")


def expect_good_default(ctx: Ctx, st: dict, generation: int, what: str) -> None:
    e = entry_of(st, generation)
    if not e or e.get("state") != "good":
        ctx.fail(
            f"{what}: generation {generation} should be good: {describe_status(st)}; "
            f"nixboot-check said: {check_log(ctx)[-800:]}"
        )
    if generation_of(st, st.get("default")) != generation:
        ctx.fail(f"{what}: generation {generation} should be the default: {describe_status(st)}")


def expect_unconfirmed(ctx: Ctx, good: int, variant: str, bad: int, what: str) -> dict:
    """Back on generation `good` (`variant`), its default, after trial `bad`
    was never confirmed from outside: bad with that reason."""
    st = expect_on(ctx, good, variant, what)
    b = expect_bad(ctx, st, bad, what)
    if "no confirmation from outside" not in str(b.get("reason")):
        ctx.fail(f"{what}: the bad verdict should say no confirm came: {b.get('reason')}")
    expect_good_default(ctx, st, good, what)
    return st


def expect_kernel_params(ctx: Ctx, what: str) -> None:
    """Generation 2's quoted parameters reach the kernel as the same pairs on
    every loader (GRUB re-quotes `linux` arguments: docs/grub.md)."""
    cmdline = ctx.sh("cat /proc/cmdline").strip()
    pairs = kernel_cmdline_pairs(cmdline)
    for want in QUOTED_PAIRS:
        if want not in pairs:
            ctx.fail(f"{what}: the kernel did not read {want[0]}={want[1]!r}; /proc/cmdline is {cmdline!r}")
    ctx.say(f"kernel parameters as the kernel reads them: {[p for p in pairs if p in QUOTED_PAIRS]}")


def narrate_boot(ctx: Ctx, b) -> None:
    ctx.say(f"boot {b.number}: {b.entry()}, initrd of generation " f"'{b.stage1_of()}', {b.outcome()}")


def broken_trial(ctx: Ctx, variant: str, outcome_rx: str, tries_args: str = "2 --reboot"):
    """Scenarios 2-4: the trial's boot ends by itself; the next boot is on 1."""
    install(ctx, {1: "good", 2: variant}, 2)
    arm_and_reboot(ctx, tries_args)
    b = ctx.power_on_expect_reset(BROKEN)
    narrate_boot(ctx, b)
    if b.stage1_of() != variant:
        ctx.fail(f"boot {b.number} should have been the trial of generation 2 ({variant}): {b.summary()}")
    if not re.search(outcome_rx, b.outcome()):
        ctx.fail(f"boot {b.number} (trial of {variant}) should have ended by {outcome_rx}: {b.summary()}")
    trial_kernel = b.first(r"Linux version") or (b.started, None)
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_on(ctx, 1, "good", f"after the {variant} trial")
    passed = ctx.m.boot.first(r"check vm-ok of good passes")
    if passed:
        ctx.metrics["recovery"] = f"{passed[0] - trial_kernel[0]:.0f}s"
    expect_bad(ctx, st, 2, f"after the {variant} trial")
    expect_rolled_back(ctx, st, 2, f"after the {variant} trial")
    return st


# -- the scenarios ------------------------------------------------------------


@scenario("0", "machinery")
def machinery(ctx: Ctx):
    """No nixboot: hand-written BLS entries prove firmware, loader, kernel, initrd,
    systemd, backdoor and the reset paths (panic) work."""
    b = ctx.power_on(BOOT)
    if b.stage1_of() != "good":
        ctx.fail(f"boot 1 ran the initrd of {b.stage1_of()}, expected generation 1 (good)")
    top = store_path("panic")
    ctx.sh(
        f"""set -e
cp {top}/initrd /boot/EFI/nixos/vm-panic-initrd.efi
cat > '/boot/loader/entries/nixos-generation-2+1.conf' <<EOT
title NixOS
version Generation 2 (hand-written)
linux /EFI/nixos/vm-linux-bzImage.efi
initrd /EFI/nixos/vm-panic-initrd.efi
options init={top}/init $(cat {top}/kernel-params)
EOT
sync"""
    )
    ctx.sh("bootctl set-oneshot 'nixos-generation-2+1.conf'")
    ctx.m.reboot()
    b = ctx.power_on_expect_reset(BROKEN)
    if b.stage1_of() != "panic" or "panic" not in b.outcome():
        ctx.fail(f"boot 2 should have been the panicking one-shot entry: {b.summary()}")
    b = ctx.power_on(BOOT)
    if b.stage1_of() != "good":
        ctx.fail(f"boot 3 should be back on generation 1: {b.summary()}")
    ents = ctx.entries()
    if "nixos-generation-2+0-1.conf" not in ents:
        ctx.fail(f"after the panic the entry should be nixos-generation-2+0-1.conf: {ents}")
    ctx.m.send("systemctl poweroff")
    ctx.m.wait_exit(90, "poweroff")


@scenario("1", "healthy-trial")
def healthy_trial(ctx: Ctx):
    install(ctx, {1: "good", 2: "healthy"}, 2)
    arm_and_reboot(ctx, "2 --reboot")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_on(ctx, 2, "healthy", "the trial boot of generation 2")
    expect_kernel_params(ctx, "the trial boot of generation 2")
    expect_good_default(ctx, st, 2, "after the trial's checks")
    prof = ctx.sh("readlink /nix/var/nix/profiles/system").strip()
    if prof != "system-2-link":
        ctx.fail(f"after promotion the system profile points at {prof}, expected system-2-link (G3)")
    ctx.say(f"generation 2 passed its checks: {describe_status(st)}")
    # systemd's own blessing runs beside nixboot-check on a counted boot
    # (systemd-bless-boot-generator, where the loader set
    # LoaderBootCountPath): both lead to the same name, and neither fails.
    bless = ctx.sh(
        "systemctl cat systemd-bless-boot.service >/dev/null 2>&1 &&"
        " systemctl show -p ActiveState -p Result --value systemd-bless-boot.service | paste -sd/ - || echo absent"
    ).strip()
    ctx.say(f"systemd-bless-boot.service on the trial boot: {bless}")
    if "failed" in bless.split("/") or not ({"success", "absent"} & set(bless.split("/"))):
        ctx.fail(f"systemd-bless-boot.service failed beside nixboot-check on the trial boot: {bless}")
    measure_blessing(ctx)
    ctx.m.reboot()
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_on(ctx, 2, "healthy", "a plain reboot after promotion")
    expect_good_default(ctx, st, 2, "a plain reboot after promotion")
    good = [j for j in ctx.journal() if j.get("event") == "good" and j.get("generation") == 2]
    if len(good) != 1:
        ctx.fail(f"the journal should say 'good' for generation 2 exactly once, says it {len(good)} times")


def measure_blessing(ctx: Ctx) -> None:
    """What nixboot-check and systemd-bless-boot each cost on this trial boot,
    as systemd accounted it (wall time from their start to their exit, CPU
    time, peak memory where the guest's systemd keeps it for a unit that
    has exited): said in the log, and as [check=...] [bless=...] in the
    scenario's PASS line (issue 13's per-boot figures)."""
    props = "ExecMainStartTimestampMonotonic ExecMainExitTimestampMonotonic CPUUsageNSec MemoryPeak"
    args = " ".join(f"-p {p}" for p in props.split())
    for unit, key in (("nixboot-check.service", "check"), ("systemd-bless-boot.service", "bless")):
        out = ctx.sh(f"systemctl show {args} {unit} 2>/dev/null || true")
        kv = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        start, end = kv.get("ExecMainStartTimestampMonotonic", "0"), kv.get("ExecMainExitTimestampMonotonic", "0")
        if not (start.isdigit() and end.isdigit() and int(start) > 0 and int(end) >= int(start)):
            ctx.say(f"{unit}: no start and exit recorded ({out.strip()!r})")
            continue
        parts = [f"{(int(end) - int(start)) / 1000:.0f}ms"]
        cpu, peak = kv.get("CPUUsageNSec", ""), kv.get("MemoryPeak", "")
        if cpu.isdigit():
            parts.append(f"cpu {int(cpu) / 1e6:.0f}ms")
        if peak.isdigit():
            parts.append(f"peak {int(peak) // 1024}KiB")
        ctx.metrics[key] = ",".join(parts)
        ctx.say(f"{unit} on the trial boot: {', '.join(parts)}")


@scenario("2", "panic")
def panic(ctx: Ctx):
    broken_trial(ctx, "panic", r"kernel panic")


@scenario("3", "driver-regression")
def driver_regression(ctx: Ctx):
    broken_trial(ctx, "nodriver", r"kernel panic")


@scenario("4", "hang-watchdog")
def hang_watchdog(ctx: Ctx):
    broken_trial(ctx, "hang", r"watchdog")


@scenario("5", "failing-check")
def failing_check(ctx: Ctx):
    install(ctx, {1: "good", 2: "failcheck"}, 2)
    arm_and_reboot(ctx, "2 --reboot")
    # The trial comes up, nixboot-check fails it, marks it bad and reboots.
    b = ctx.power_on_expect_reset(BOOT + SETTLE)
    narrate_boot(ctx, b)
    if b.stage1_of() != "failcheck":
        ctx.fail(f"boot {b.number} should have been the trial of generation 2: {b.summary()}")
    if not b.first(r"vm-service of failcheck fails"):
        ctx.fail(f"boot {b.number}: the failing check's output is not on the console: {b.summary()}")
    if b.outcome() != "rebooted":
        ctx.fail(f"boot {b.number}: nixboot-check should have rebooted after the failed check: {b.summary()}")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_on(ctx, 1, "good", "after the failed check")
    expect_bad(ctx, st, 2, "after the failed check")
    expect_rolled_back(ctx, st, 2, "after the failed check")


def counted_trial(ctx: Ctx, tries: int, why: str, mode: str, prepare=None):
    """Scenarios 6 and 10: a panicking trial armed by sort order (or, on
    systemd-boot 260+, as the preferred entry) takes exactly `tries` boots,
    then the loader itself boots the good generation."""
    install(ctx, {1: "good", 2: "panic"}, 2, prepare=prepare)
    rc, out = ctx.nixboot(f"--json try 2 --tries {tries}")
    armed = json.loads(out.strip().splitlines()[-1])
    ctx.say(f"nixboot try 2 --tries {tries} {why}: {armed}")
    if armed.get("mode") != mode:
        ctx.fail(f"{why} the trial should be armed as {mode}: {armed}")
    st = ctx.status()
    # By sort order the trial is the loader's first entry; as the preferred
    # entry the good default stays pinned.
    if mode == "preferred" and generation_of(st, st.get("default")) != 1:
        ctx.fail(f"while generation 2 is armed ({mode}) the default should be generation 1: {describe_status(st)}")
    ctx.m.reboot()
    for i in range(tries):
        b = ctx.power_on_expect_reset(BROKEN)
        narrate_boot(ctx, b)
        if b.stage1_of() != "panic":
            ctx.fail(f"try {i + 1} of {tries}: boot {b.number} should have been generation 2 again: {b.summary()}")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_on(ctx, 1, "good", f"after {tries} failed tries")
    expect_bad(ctx, st, 2, f"after {tries} failed tries")
    e2 = entry_of(st, 2)
    if e2.get("tries_done") != tries:
        ctx.fail(f"generation 2 should have used exactly {tries} tries: {e2}")


@scenario("6", "counted-no-oneshot")
def counted_no_oneshot(ctx: Ctx):
    # A machine whose firmware variables were never writable: from before nixboot.
    counted_trial(ctx, 3, "without EFI variable writes", "sort-order", prepare=lambda c: c.bl.disable_one_shot(c))


@scenario("10", "several-tries")
def several_tries(ctx: Ctx):
    # systemd-boot deletes LoaderEntryOneShot as it reads it: a second try
    # exists only because the loader picks the counted entry by sort order,
    # or, from systemd-boot 260, as the preferred entry (the default stays
    # pinned; the loader skips the preferred entry once it is bad).
    counted_trial(ctx, 2, "with writable EFI variables", ctx.bl.multi_try_mode)
    st = ctx.status()
    if ctx.sh("ls /sys/firmware/efi/efivars/ | grep -c '^LoaderEntryPreferred-' || true").strip() != "0":
        ctx.fail(f"LoaderEntryPreferred is still set after the trial was decided: {describe_status(st)}")


@scenario("7", "power-cut-promotion")
def power_cut_promotion(ctx: Ctx):
    install(ctx, {1: "good", 2: "healthy"}, 2)
    arm_and_reboot(ctx, "2 --reboot")
    ctx.power_on(BOOT)
    # Cut the power the instant the verdict is recorded, before promotion finishes.
    ctx.m.send(
        "while ! [ -e /run/nixboot/verdict ]; do sleep 0.01; done; "
        "echo 'NIXBOOT-VM: cutting power during promotion' > /dev/console; "
        "echo o > /proc/sysrq-trigger"
    )
    b = ctx.m.wait_exit(SETTLE, "the power cut during promotion")
    narrate_boot(ctx, b)
    if not b.first(r"cutting power during promotion"):
        ctx.fail(f"boot {b.number}: the machine went down before the verdict: {b.summary()}")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    settle(ctx)
    st = ctx.status()
    verdicts = [j for j in ctx.journal() if j.get("event") in ("good", "bad") and j.get("generation") == 2]
    if len(verdicts) != 1:
        ctx.fail(
            f"after the power cut generation 2 should have exactly one verdict, the journal has "
            f"{[v.get('event') for v in verdicts]}: {describe_status(st)}"
        )
    e2 = entry_of(st, 2)
    if e2.get("state") == "trial":
        ctx.fail(f"generation 2 is still a trial after the power cut: {describe_status(st)}")
    dflt = entry_of(st, generation_of(st, st.get("default")) or -1)
    if not dflt or dflt.get("state") != "good":
        ctx.fail(f"the default is not a good generation after the power cut (G1): {describe_status(st)}")
    if e2.get("state") == "good" and generation_of(st, st.get("default")) != 2:
        ctx.fail(f"generation 2 is good but promotion did not finish (G3): {describe_status(st)}")
    ctx.say(f"after the power cut: verdict {verdicts[0].get('event')}; {describe_status(st)}")
    ctx.m.reboot()
    ctx.power_on(BOOT)
    want = 2 if e2.get("state") == "good" else 1
    expect_on(ctx, want, "healthy" if want == 2 else "good", "a plain reboot after the power cut")


@scenario("9", "live-trial")
def live_trial(ctx: Ctx):
    install(ctx, {1: "good", 2: "healthy", 3: "healthy2"}, 3)
    settle(ctx)
    boot_id = ctx.sh("cat /proc/sys/kernel/random/boot_id").strip()
    # (a) confirmed: promoted without a reboot.
    _, out = ctx.nixboot("try 2 --live --confirm-timeout 120", timeout=200)
    ctx.say(f"nixboot try 2 --live: {out.strip()}")
    stc = ctx.sh("cat /var/lib/nixboot-vm/switch-to-configuration.log")
    if f"{store_path('healthy')} test" not in stc:
        ctx.fail(f"try --live should have run generation 2's switch-to-configuration test: {stc}")
    _, out = ctx.nixboot("confirm")
    st = ctx.status()
    expect_good_default(ctx, st, 2, "a confirmed live trial")
    # (b) not confirmed: reverted without a reboot.
    _, out = ctx.nixboot("try 3 --live --confirm-timeout 20", timeout=200)
    deadline = time.time() + 120
    while time.time() < deadline:
        stc = ctx.sh("cat /var/lib/nixboot-vm/switch-to-configuration.log")
        if stc.strip().splitlines()[-1].split()[1:3] == [store_path("healthy"), "test"]:
            break
        time.sleep(3)
    else:
        ctx.fail(f"an unconfirmed live trial of generation 3 was not reverted to generation 2 " f"within 120 s: {stc}")
    if ctx.sh("cat /proc/sys/kernel/random/boot_id").strip() != boot_id:
        ctx.fail("the live revert rebooted the machine; it should not")
    st = ctx.status()
    expect_good_default(ctx, st, 2, "after the unconfirmed live trial")
    if (entry_of(st, 3) or {}).get("state") == "good":
        ctx.fail(f"the unconfirmed generation 3 is good: {describe_status(st)}")
    # (c) reboot during the window: the old default boots.
    ctx.nixboot("try 3 --live --confirm-timeout 300", timeout=200)
    ctx.m.reboot()
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_on(ctx, 2, "healthy", "a reboot during a live trial")
    expect_good_default(ctx, st, 2, "a reboot during a live trial")


def trial_id(ctx: Ctx, out: str, what: str) -> str:
    m = re.search(r"trial ([0-9a-f]{32})", out)
    if not m:
        ctx.fail(f"{what}: `nixboot try` printed no trial ID: {out.strip()[-400:]}")
    return m.group(1)


def awaiting_confirm(ctx: Ctx, generation: int, trial: str, what: str) -> dict:
    """The trial boot passed its checks and waits: nothing promoted yet."""
    st = expect_on(ctx, generation, "healthy" if generation == 2 else "healthy2", what)
    live = st.get("live_trial") or {}
    if live.get("id") != trial or live.get("kind") != "reboot" or not live.get("awaiting_confirm"):
        ctx.fail(f"{what}: status should show trial {trial} awaiting a confirm: {live}; {check_log(ctx)[-600:]}")
    if (entry_of(st, generation) or {}).get("state") == "good":
        ctx.fail(f"{what}: generation {generation} was promoted before any confirm: {describe_status(st)}")
    if generation_of(st, st.get("default")) == generation:
        ctx.fail(f"{what}: generation {generation} became the default before any confirm (G6)")
    ctx.say(f"{what}: waits for a confirm until {live.get('deadline')}")
    return st


@scenario("11", "confirm-trial")
def confirm_trial(ctx: Ctx):
    """Reboot trials that wait for a confirm from outside (G6): a confirmed one
    is promoted; a stale ID is refused; an unconfirmed one is marked bad and the
    machine reboots into the last good generation by itself."""
    install(ctx, {1: "good", 2: "healthy", 3: "healthy2"}, 3)
    # (a) confirmed from outside on the trial boot: promoted.
    out = arm_and_reboot(ctx, "2 --reboot --confirm-timeout 150")
    first = trial_id(ctx, out, "try 2 --reboot --confirm-timeout")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    awaiting_confirm(ctx, 2, first, "the trial boot of generation 2")
    _, out = ctx.nixboot(f"confirm {first}")
    ctx.say(f"nixboot confirm: {out.strip()}")
    st = ctx.status()
    expect_good_default(ctx, st, 2, "a confirmed trial boot")
    rc, out = ctx.nixboot(f"confirm {first}", ok=False)
    if rc != 1:
        ctx.fail(f"a replayed confirm should exit 1, exited {rc}: {out.strip()[-300:]}")
    # (b) never confirmed: marked bad, the machine reboots into generation 2.
    out = arm_and_reboot(ctx, "3 --reboot --confirm-timeout 20")
    second = trial_id(ctx, out, "try 3 --reboot --confirm-timeout")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    awaiting_confirm(ctx, 3, second, "the trial boot of generation 3")
    rc, out = ctx.nixboot(f"confirm {first}", ok=False)
    if rc != 1:
        ctx.fail(f"the earlier trial's ID must not confirm trial {second}; exit {rc}: {out.strip()[-300:]}")
    ctx.m.wait_exit(120, "the unconfirmed trial to reboot the machine by itself")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_unconfirmed(ctx, 2, "healthy", 3, "after the unconfirmed trial")
    expect_rolled_back(ctx, st, 3, "after the unconfirmed trial")


@scenario("12", "stability-window")
def stability_window(ctx: Ctx):
    """A generation whose checks pass at boot but whose service crash-loops a
    little later fails its trial in the stability window (stability-window =
    40 in its config) and the machine reboots into generation 1."""
    install(ctx, {1: "good", 2: "flaky"}, 2)
    arm_and_reboot(ctx, "2 --reboot")
    b = ctx.power_on_expect_reset(BOOT + 120)
    narrate_boot(ctx, b)
    if b.stage1_of() != "flaky":
        ctx.fail(f"boot {b.number} should have been the trial of generation 2 (flaky): {b.summary()}")
    if not b.first(r"vm-flaky.service crashes"):
        ctx.fail(f"boot {b.number}: vm-flaky.service never ran: {b.summary()}")
    ctx.power_on(BOOT)
    narrate_boot(ctx, ctx.m.boot)
    st = expect_on(ctx, 1, "good", "after the flaky trial")
    bad = expect_bad(ctx, st, 2, "after the flaky trial")
    if not re.search(r"stability window vm-flaky\.service restarted \d+ times?", str(bad.get("reason"))):
        ctx.fail(f"the bad verdict should name the restarting service: {bad.get('reason')}")
    expect_good_default(ctx, st, 1, "after the flaky trial")
    expect_rolled_back(ctx, st, 2, "after the flaky trial")
