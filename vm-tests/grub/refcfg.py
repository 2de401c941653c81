"""A reference grub.cfg for the GRUB VM scenarios while nixboot's own GRUB
backend cannot write one yet (scenarios say which they used: "cfg=nixboot"
or "cfg=reference").

It implements docs/contracts.md's GRUB environment with literal comparisons
(GRUB script has no arithmetic) and what boot/health/detect.cpp expects on a
GRUB trial boot's command line (nixboot.entry, nixboot.trial, nixboot.tries).
Proven on real GRUB 2.06 EFI and i386-pc by vm-tests/grub/run:
  - the decrement is saved with save_env BEFORE the kernel is loaded;
  - the trial is booted only if save_env succeeded (G5: where GRUB cannot
    write its env, it never boots a trial it cannot count);
  - variables used inside menuentry bodies are exported: GRUB runs an entry
    in a new environment context that only inherits exported variables.
"""

from __future__ import annotations

import dataclasses
import re

MAX_TRIES = 9

_SAFE = re.compile(r"^[A-Za-z0-9._/=,:+@-]*$")


@dataclasses.dataclass
class MenuEntry:
    id: str  # nixos-generation-N
    title: str
    kernel: str  # path on the boot filesystem, e.g. /kernels/vmlinuz
    initrd: str
    params: list[str]  # init=... and the generation's kernel parameters


def _safe(word: str, what: str) -> str:
    # Everything interpolated into the script is a plain word: no quoting games.
    if not _SAFE.match(word):
        raise ValueError(f"{what} {word!r}: not a plain word for grub.cfg")
    return word


def grub_cfg(entries: list[MenuEntry], default_id: str, timeout: int = 0) -> str:
    """The whole grub.cfg: preamble (terminal, env, counting) then entries."""
    _safe(default_id, "default entry")
    out = [
        "# Reference grub.cfg of the nixboot GRUB VM tests (vm-tests/grub/refcfg.py).",
        'if [ "${grub_platform}" = "pc" ]; then',
        "  serial --unit=0 --speed=115200",
        "  terminal_input serial console",
        "  terminal_output serial console",
        "fi",
        f"set timeout={int(timeout)}",
        f'set default="{default_id}"',
        "load_env nixboot_trial nixboot_tries nixboot_default",
        'if [ -n "${nixboot_default}" ]; then',
        '  set default="${nixboot_default}"',
        "fi",
        'set nixboot_boot_trial=""',
        'if [ -n "${nixboot_trial}" ]; then',
        '  set nixboot_left=""',
    ]
    for n in range(1, MAX_TRIES + 1):
        kw = "if" if n == 1 else "elif"
        out.append(f'  {kw} [ "${{nixboot_tries}}" = "{n}" ]; then')
        out.append(f"    set nixboot_left={n - 1}")
    out += [
        "  fi",
        '  if [ -n "${nixboot_left}" ]; then',
        '    set nixboot_tries="${nixboot_left}"',
        "    if save_env nixboot_tries; then",
        '      set default="${nixboot_trial}"',
        '      set nixboot_boot_trial="${nixboot_trial}"',
        "    else",
        '      echo "nixboot: save_env failed: not booting trial ${nixboot_trial}"',
        "    fi",
        "  fi",
        "fi",
        "export nixboot_boot_trial",
        "export nixboot_tries",
        'echo "nixboot-grub: trial=${nixboot_trial} tries=${nixboot_tries} boot_trial=${nixboot_boot_trial} default=${default}"',
        "",
    ]
    for e in entries:
        _safe(e.id, "entry id")
        for w in [e.kernel, e.initrd, *e.params]:
            _safe(w, f"entry {e.id}: word")
        if '"' in e.title or "\\" in e.title or "$" in e.title:
            raise ValueError(f"entry {e.id}: title {e.title!r} needs quoting")
        base = " ".join([e.kernel, *e.params, f"nixboot.entry={e.id}"])
        out += [
            f'menuentry "{e.title}" --id {e.id} {{',
            f'  if [ "${{nixboot_boot_trial}}" = "{e.id}" ]; then',
            f"    linux {base} nixboot.trial={e.id} nixboot.tries=${{nixboot_tries}}",
            "  else",
            f"    linux {base}",
            "  fi",
            f"  initrd {e.initrd}",
            "}",
        ]
    return "\n".join(out) + "\n"
