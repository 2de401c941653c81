"""Small helpers shared by the harness: running commands, logging, paths."""
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VM_TESTS = REPO / "vm-tests"
GUEST = VM_TESTS / "guest"
REQUIREMENTS = REPO / "scripts" / "requirements"


class HarnessError(Exception):
    """A failure of the harness itself or of a scenario, with context."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def requirements() -> dict:
    """scripts/requirements as {program or path: (Debian package, needed by)}."""
    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        f = line.split()
        if len(f) >= 3 and not f[0].startswith("#") and f[0] != "-":
            out[f[0]] = (f[1], f[2])
    return out


def missing_requirements(components) -> list:
    """One line per program or file of `components` that is not here."""
    out = []
    for what, (package, needed_by) in requirements().items():
        if needed_by not in components:
            continue
        here = Path(what).exists() if what.startswith("/") else shutil.which(what)
        if not here:
            out.append(f"{what} is missing (Debian package {package}; scripts/install-deps installs it)")
    return out


def program(name) -> str:
    """name, if scripts/requirements lists it: every program the harness calls
    is there, so scripts/install-deps cannot miss one. A path (the nixboot
    binaries, the guest's scripts) is the project's own and needs no entry."""
    name = str(name)
    if "/" not in name and name not in requirements():
        raise HarnessError(
            f"the harness calls '{name}', which scripts/requirements does not list " "(add it with its Debian package)"
        )
    return name


def run(cmd, *, cwd=None, env=None, input=None, capture=False, check=True, quiet=True):
    """Runs a command; on failure raises HarnessError naming the command and its stderr."""
    program(cmd[0])
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    res = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=full_env,
        input=input,
        stdout=subprocess.PIPE if (capture or quiet) else None,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
    )
    if check and res.returncode != 0:
        err = (res.stderr or "").strip().splitlines()[-5:]
        raise HarnessError(f"command failed ({res.returncode}): {' '.join(map(str, cmd))}: " + " | ".join(err))
    return res.stdout if capture else res


def cache_dir() -> Path:
    d = Path(os.environ.get("NIXBOOT_VM_CACHE", REPO / "build" / "vm-cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def out_dir() -> Path:
    d = Path(os.environ.get("NIXBOOT_VM_OUT", REPO / "build" / "vm-tests"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            p = p.read_bytes()
        if isinstance(p, str):
            p = p.encode()
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def mtools_env():
    return {"MTOOLS_SKIP_CHECK": "1"}


_ports_lock = threading.Lock()
_ports_taken: set = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and that no other machine of
    this run was given (a machine keeps its forwards across its boots, while
    its QEMU, which binds them, comes and goes)."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ports_taken:
                _ports_taken.add(port)
                return port
    raise HarnessError("no free TCP port on 127.0.0.1")
