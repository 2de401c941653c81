"""The scenarios of issue 5, written once for every bootloader plug-in."""
import re
import time

from .images import store_path
from .scenario import Ctx, scenario

BOOT = 240        # seconds for a boot to reach the backdoor shell (TCG)
BROKEN = 180      # seconds for a broken boot to end by itself


@scenario("0", "machinery")
def machinery(ctx: Ctx):
    """No nixboot: hand-written BLS entries prove firmware, loader, kernel, initrd,
    systemd, backdoor and the reset paths (panic) work."""
    b = ctx.power_on(BOOT)
    if b.stage1_of() != "good":
        ctx.fail(f"boot 1 ran the initrd of {b.stage1_of()}, expected generation 1 (good)")
    if ctx.sh("uname -r").strip() == "":
        ctx.fail("uname in the guest printed nothing")
    top = store_path("panic")
    ctx.sh(f"""set -e
cp {top}/initrd /boot/EFI/nixos/vm-panic-initrd.efi
cat > '/boot/loader/entries/nixos-generation-2+1.conf' <<EOT
title NixOS
version Generation 2 (hand-written)
linux /EFI/nixos/vm-linux-bzImage.efi
initrd /EFI/nixos/vm-panic-initrd.efi
options init={top}/init $(cat {top}/kernel-params)
EOT
sync""")
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
