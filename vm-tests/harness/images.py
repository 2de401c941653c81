"""Builds everything the guests boot, from Debian packages only.

Cached under cache_dir() (keyed by content): the kernel and its modules, the
Debian root filesystem image. Per run (cheap): the /nix image holding the
fake NixOS generations and the nixboot binaries, and one initrd per variant.
"""
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .util import GUEST, REPO, HarnessError, cache_dir, digest, log, program, run

# Runtime packages of the guest: systemd as PID 1 plus what the nixboot
# binaries link against (checked against `ldd` at build time).
ROOT_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "udev",
    "kmod",
    "util-linux",
    "procps",
    "libefivar1",
    "libboost-program-options1.74.0",
    "libspdlog1.10",
    "libfmt9",
    "libsystemd0",
    "libmd0",
    "libstdc++6",
    "systemd-boot",
    "efibootmgr",
    "grub-common",  # grub-probe, grub-mkrelpath, grub-editenv: nixboot's GRUB backend runs them
    # A system bus, as every NixOS machine has: without it `systemctl reboot`
    # (nixboot-try --reboot, the verdict's reboot) prints "Failed to connect
    # to bus" before it falls back to systemd's private socket.
    "dbus",
    # sshd, as deployed NixOS machines run it: `nixboot deploy` on the host
    # drives the deploy scenarios (harness/deploy.py) through it, over QEMU's
    # user network (a host forward bound to 127.0.0.1).
    "openssh-server",
]

# The guest roots by Debian suite: Debian 12's, and Debian 13's for the
# cells whose userspace must be the newer systemd (257: systemd-bless-boot,
# boot-complete.target) beside its loader. Debian 13 renamed libefivar (the
# 64-bit time_t transition; same soname on amd64) and ships other sonames of
# Boost, spdlog and fmt than the Debian 12 build links against: those come
# with the nixboot binary, as a Nix closure brings its libraries
# (provide_libraries).
ROOT_SUITES = {
    "bookworm": ROOT_PACKAGES,
    # debootstrap does not resolve alternatives: systemd-boot's
    # "systemd-boot-efi-signed | systemd-boot-efi" is named here.
    "trixie": [
        {"libefivar1": "libefivar1t64"}.get(p, p)
        for p in ROOT_PACKAGES
        if p not in ("libboost-program-options1.74.0", "libspdlog1.10", "libfmt9")
    ]
    + ["systemd-boot-efi"],
}

# Kernel modules installed in the root image's /lib/modules (with depmod's
# indexes), for what stage 2 needs beyond the initrd: the GRUB plug-ins'
# btrfs /boot. Without btrfs.ko, udev's `btrfs ready` builtin cannot open
# /dev/btrfs-control, marks the partition SYSTEMD_READY=0, and
# /dev/disk/by-label/ESP never appears (boot.mount times out). And the NIC's
# driver, which udev loads in stage 2 (the 'nonic' generation refuses it).
ROOT_MODULES = ["btrfs", "virtio_net"]

# Modules the test initrd loads, in an order resolved from modules.dep.
INITRD_MODULES = [
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "libcrc32c",
    "ext4",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "efivarfs",
    "i6300esb",
]


def debian_mirror() -> str:
    """The mirror of this machine's own apt sources (scripts/debian-mirror),
    or NIXBOOT_VM_MIRROR."""
    if "NIXBOOT_VM_MIRROR" in os.environ:
        return os.environ["NIXBOOT_VM_MIRROR"]
    return run([REPO / "scripts" / "debian-mirror"], capture=True).strip()


@dataclass
class Kernel:
    version: str
    vmlinuz: Path
    modules_dir: Path  # .../lib/modules/VERSION

    def module_order(self, wanted):
        """Module paths (relative to modules_dir) in load order: dependencies first."""
        deps = {}
        for line in (self.modules_dir / "modules.dep").read_text().splitlines():
            mod, _, rest = line.partition(":")
            deps[mod] = rest.split()
        by_name = {Path(m).name.removesuffix(".ko").replace("-", "_"): m for m in deps}
        order = []

        def visit(mod):
            if mod in order:
                return
            for d in reversed(deps[mod]):
                visit(d)
            order.append(mod)

        for name in wanted:
            if name not in by_name:
                raise HarnessError(f"kernel {self.version}: module '{name}' not found in modules.dep")
            visit(by_name[name])
        return order


def kernel() -> Kernel:
    """The generic Debian kernel `linux-image-amd64` currently depends on."""
    out = run(["apt-cache", "depends", "linux-image-amd64"], capture=True)
    m = re.search(r"Depends: (linux-image-(\S+)-amd64)\b", out)
    if not m:
        raise HarnessError(f"apt-cache depends linux-image-amd64: no linux-image dependency in: {out!r}")
    pkg, abi = m.group(1), m.group(2)
    version = f"{abi}-amd64"
    dest = cache_dir() / "kernel" / version
    stamp = dest / ".done"
    if not stamp.exists():
        log(f"fetching kernel {pkg}")
        shutil.rmtree(dest, ignore_errors=True)
        (dest / "deb").mkdir(parents=True)
        run(["apt-get", "download", "-q", pkg], cwd=dest / "deb")
        debs = list((dest / "deb").glob("*.deb"))
        if len(debs) != 1:
            raise HarnessError(f"apt-get download {pkg}: expected one .deb, got {debs}")
        run(["dpkg-deb", "-x", debs[0], dest / "tree"])
        run(["depmod", "-b", dest / "tree", version])
        debs[0].unlink()
        stamp.write_text(pkg + "\n")
    return Kernel(version, dest / "tree" / "boot" / f"vmlinuz-{version}", dest / "tree" / "lib" / "modules" / version)


def unmount_under(tree: Path) -> None:
    """Unmounts (lazily, deepest first) whatever is mounted at or below `tree`."""
    prefix = str(tree.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        run(["umount", "-l", point])


def root_image(suite: str = "bookworm") -> Path:
    """Debian minbase + systemd root filesystem of `suite` (a key of
    ROOT_SUITES; ext4, label nixroot), with ROOT_MODULES of kernel() in
    /lib/modules and, where the suite lacks them, the nixboot binary's
    libraries."""
    if suite not in ROOT_SUITES:
        raise HarnessError(f"root image: no package list for Debian suite '{suite}' (known: {', '.join(ROOT_SUITES)})")
    packages = ROOT_SUITES[suite]
    overlay = GUEST / "root"
    files = sorted(p for p in overlay.rglob("*") if p.is_file())
    kern = kernel()
    modules = kern.module_order(ROOT_MODULES)
    libs = [] if suite == "bookworm" else nixboot_libraries()
    key = digest(
        debian_mirror(),
        suite,
        " ".join(packages),
        *[str(p.relative_to(overlay)) for p in files],
        *files,
        *[str(p.stat().st_mode & 0o777) for p in files],
        kern.version,
        *modules,
        *[kern.modules_dir / m for m in modules],
        *[f"{name} {path}" for name, path in libs],
        *[path for _, path in libs],
    )
    img = cache_dir() / f"root-{suite}-{key}.img"
    if img.exists():
        return img
    for old in cache_dir().glob(f"root-{suite}-*.img"):
        old.unlink()
    tree = cache_dir() / f"rootfs-{suite}"
    unmount_under(tree)
    shutil.rmtree(tree, ignore_errors=True)
    log(f"debootstrap {suite} from {debian_mirror()} (a minute or two)")
    try:
        run(["debootstrap", "--variant=minbase", "--include=" + ",".join(packages), suite, tree, debian_mirror()])
    except HarnessError as e:
        dlog = tree / "debootstrap/debootstrap.log"
        tail = " | ".join(dlog.read_text(errors="replace").splitlines()[-4:]) if dlog.exists() else "no log"
        raise HarnessError(f"{e} -- {dlog}: {tail}") from e
    # debootstrap can leave the tree's /proc mounted (seen here: a postinst's
    # process still held it when debootstrap unmounted); mkfs.ext4 -d would
    # then copy the host's /proc into the image and fail on it.
    unmount_under(tree)
    run(["cp", "-a", "--no-preserve=ownership", f"{overlay}/.", tree])
    wants = tree / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "nixboot-vm-backdoor.service").unlink(missing_ok=True)
    (wants / "nixboot-vm-backdoor.service").symlink_to("/etc/systemd/system/nixboot-vm-backdoor.service")
    for unit in [
        "serial-getty@ttyS0.service",
        "serial-getty@ttyS1.service",
        "getty@tty1.service",
        "systemd-timesyncd.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_reap.service",
    ]:
        p = tree / "etc/systemd/system" / unit
        p.unlink(missing_ok=True)
        p.symlink_to("/dev/null")
    # The network (static: QEMU's user network is 10.0.2.0/24) and sshd.
    for unit, target in (
        ("systemd-networkd.service", "multi-user.target"),
        ("systemd-networkd.socket", "sockets.target"),
        ("ssh.service", "multi-user.target"),
    ):
        link = tree / "etc/systemd/system" / f"{target}.wants" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"/lib/systemd/system/{unit}")
    for d in ["nix", "boot", "var/lib/nixboot-vm", "root/.ssh"]:
        (tree / d).mkdir(parents=True, exist_ok=True)
    mods = tree / "lib/modules" / kern.version
    for m in modules:
        (mods / m).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kern.modules_dir / m, mods / m)
    for f in ("modules.builtin", "modules.builtin.modinfo"):
        if (kern.modules_dir / f).exists():
            shutil.copy2(kern.modules_dir / f, mods / f)
    run(["depmod", "-b", tree, kern.version])
    provide_libraries(libs, tree)
    etc_nixboot = tree / "etc/nixboot"
    if etc_nixboot.is_dir() and not etc_nixboot.is_symlink():
        shutil.rmtree(etc_nixboot)
    shutil.rmtree(tree / "var/cache/apt/archives", ignore_errors=True)
    tmp = img.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    run(["truncate", "-s", "2G", tmp])
    run(["mkfs.ext4", "-q", "-F", "-L", "nixroot", "-d", tree, tmp])
    tmp.rename(img)
    shutil.rmtree(tree)
    return img


# --- the fake NixOS generations -------------------------------------------


@dataclass
class Generation:
    """One fake NixOS system generation. variant: what is broken in it."""

    number: int
    variant: str = "good"  # good|healthy|panic|nodriver|hang|failcheck|poweroff|flaky|nonic|nossh
    kernel_params: list = field(default_factory=list)

    @property
    def label(self):
        return f"{self.number}-{self.variant}"


# Every variant the scenarios use; all live in the one /nix image, and each
# scenario links the ones it needs as system-N-link.
VARIANTS = [
    "good",
    "healthy",
    "healthy2",
    "panic",
    "nodriver",
    "hang",
    "failcheck",
    "poweroff",
    "flaky",
    "nonic",  # boots and passes its own checks, but its NIC driver never loads: unreachable
    "nossh",  # its activation stops sshd: unreachable after a switch
]


def toplevel_name(variant: str) -> str:
    return f"{digest('toplevel', variant)[:32]}-nixos-system-nixboot-vm-{variant}"


def store_path(variant: str) -> str:
    return f"/nix/store/{toplevel_name(variant)}"


BASE_PARAMS = [
    "console=ttyS0,115200",
    "no_timer_check",
    "panic=1",
    "boot.panic_on_fail",
    "nixboot.watchdog=20",
    "systemd.show_status=1",
]


# Parameters with quotes and spaces, as laptops carry them: the kernel must
# read the same pairs whichever loader booted generation 2 (scenario 1).
QUOTED_PARAMS = ['acpi_osi="!Windows 2020"', 'nixboot.vm_note="two words"']
QUOTED_PAIRS = [("acpi_osi", "!Windows 2020"), ("nixboot.vm_note", "two words")]


def kernel_cmdline_pairs(cmdline: str) -> list:
    """/proc/cmdline split as the kernel splits it (Linux lib/cmdline.c
    next_arg): double quotes group, the quotes around a value or a whole
    parameter are dropped, there is no escape character."""
    out = []
    s = cmdline.strip()
    while s:
        quoted = s[0] == '"'
        if quoted:
            s = s[1:]
        in_quote, equals, i = quoted, -1, 0
        while i < len(s) and (in_quote or not s[i].isspace()):
            if equals < 0 and s[i] == "=":
                equals = i
            if s[i] == '"':
                in_quote = not in_quote
            i += 1
        word, s = s[:i], s[i:].lstrip()
        closing = word.endswith('"')
        if equals < 0:
            out.append((word[:-1] if quoted and closing else word, None))
            continue
        name, val = word[:equals], word[equals + 1 :]
        if val.startswith('"'):  # the value's own quotes
            val = val[1:]
            quoted = True
        if quoted and closing:  # the closing quote of the value or of the whole word
            val = val[:-1]
        out.append((name, val))
    return out


def _subst(text: str, **kw) -> str:
    for k, v in kw.items():
        text = text.replace(f"@{k}@", v)
    return text


def build_initrd(kern: Kernel, variant: str, stage1: Path | None, dest: Path) -> None:
    """A busybox initrd: modules (minus virtio_blk for 'nodriver'), nixboot-stage1, init."""
    tree = dest.with_suffix(".tree")
    shutil.rmtree(tree, ignore_errors=True)
    for d in ["bin", "etc", "lib/modules", "dev", "proc", "sys", "run"]:
        (tree / d).mkdir(parents=True)
    shutil.copy2("/bin/busybox", tree / "bin/busybox")
    (tree / "bin/sh").symlink_to("busybox")
    order = kern.module_order(INITRD_MODULES)
    if variant == "nodriver":
        order = [m for m in order if not m.endswith("/virtio_blk.ko")]
    for m in order:
        shutil.copy2(kern.modules_dir / m, tree / "lib/modules" / Path(m).name)
    (tree / "etc/modules-order").write_text("\n".join(Path(m).name for m in order) + "\n")
    if stage1 is not None:
        shutil.copy2(stage1, tree / "bin/nixboot-stage1")
        _copy_libs(stage1, tree)
    init = _subst((GUEST / "initrd-init").read_text(), LABEL=variant, VARIANT=variant)
    (tree / "init").write_text(init)
    (tree / "init").chmod(0o755)
    files = subprocess.run([program("find"), "."], cwd=tree, capture_output=True, text=True, check=True).stdout
    with open(dest, "wb") as f:
        cpio = subprocess.run(
            [program("cpio"), "-o", "-H", "newc", "--quiet", "-R", "0:0"],
            cwd=tree,
            input=files.encode(),
            stdout=subprocess.PIPE,
            check=True,
        )
        f.write(subprocess.run([program("gzip"), "-1"], input=cpio.stdout, stdout=subprocess.PIPE, check=True).stdout)
    shutil.rmtree(tree)


def _copy_libs(binary: Path, tree: Path) -> None:
    """Copies the shared libraries of a dynamic binary (nixboot-stage1 should be static)."""
    out = subprocess.run([program("ldd"), binary], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.search(r"(/\S+\.so[^\s]*)", line)
        if m and Path(m.group(1)).exists():
            src = Path(m.group(1))
            dst = tree / src.relative_to("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    if (tree / "lib64").exists() and not (tree / "lib64").is_symlink():
        pass


def _write(path: Path, text: str, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


CHECK_OK = """#!/bin/sh
# VM test check: always passes on a healthy generation.
echo "NIXBOOT-VM: check vm-ok of @LABEL@ passes"
exit 0
"""
CHECK_FAIL = """#!/bin/sh
# VM test check: the health check of a broken generation.
echo "NIXBOOT-VM: check vm-service of @LABEL@ fails: service vm-app is not running (simulated)"
exit 1
"""
NIXBOOT_CONF = """# nixboot configuration of the VM test generation @LABEL@
bootloader = @BOOTLOADER@
esp = /boot
profile = /nix/var/nix/profiles/system
state = /var/lib/nixboot
checks-dir = /etc/nixboot/checks.d
check-timeout = 30
verdict-timeout = 180
watchdog-timeout = @WATCHDOG@
confirm-timeout = 60
"""


def write_toplevel(store: Path, variant: str, kern: Kernel, initrd: Path, bootloader: str, watchdog: int) -> None:
    top_path = store_path(variant)
    top = store / toplevel_name(variant)
    top.mkdir(parents=True)
    shutil.copy2(initrd, top / "initrd")
    (top / "kernel").symlink_to(f"/nix/store/{KERNEL_NAME}/bzImage")
    kw = dict(LABEL=variant, VARIANT=variant, TOPLEVEL=top_path, BOOTLOADER=bootloader, WATCHDOG=str(watchdog))
    _write(top / "init", _subst((GUEST / "toplevel-init").read_text(), **kw), 0o755)
    _write(top / "bin/switch-to-configuration", _subst((GUEST / "switch-to-configuration").read_text(), **kw), 0o755)
    conf = _subst(NIXBOOT_CONF, **kw)
    if variant == "flaky":  # its checks pass; vm-flaky.service crash-loops a little later
        conf += "stability-window = 40\n"
    _write(top / "etc/nixboot/nixboot.conf", conf)
    _write(top / "etc/nixboot/checks.d/required/vm-ok", _subst(CHECK_OK, **kw), 0o755)
    if variant == "failcheck":
        _write(top / "etc/nixboot/checks.d/required/vm-service", _subst(CHECK_FAIL, **kw), 0o755)
    params = [f"nixboot.watchdog={watchdog}" if p.startswith("nixboot.watchdog=") else p for p in BASE_PARAMS]
    params += QUOTED_PARAMS if variant == "healthy" else []
    _write(top / "kernel-params", " ".join(params))
    _write(top / "nixos-version", f"24.11-nixboot-vm-{variant}")
    spec = {
        "org.nixos.bootspec.v1": {
            "init": f"{top_path}/init",
            "initrd": f"{top_path}/initrd",
            "kernel": f"{top_path}/kernel",
            "kernelParams": params,
            "label": f"NixOS 24.11 (nixboot-vm {variant})",
            "system": "x86_64-linux",
            "toplevel": top_path,
        }
    }
    _write(top / "boot.json", json.dumps(spec, indent=2) + "\n")


KERNEL_NAME = "00000000000000000000000000000000-linux-vm"
NIXBOOT_PKG = "11111111111111111111111111111111-nixboot"


def nixboot_build_dir() -> Path:
    return Path(os.environ.get("NIXBOOT_BUILD", REPO / "build"))


def nix_image(dest: Path, kern: Kernel, bootloader: str, watchdog: int = 20) -> dict:
    """The /nix disk (label nixstore): kernel, nixboot, one toplevel per variant.

    Returns {variant: toplevel store path}."""
    build = nixboot_build_dir()
    stage1 = build / "stage1-hook" / "nixboot-stage1"
    nixboot = build / "cli" / "nixboot"
    for b in (stage1, nixboot):
        if not b.exists():
            raise HarnessError(f"{b}: not built (run scripts/build or set NIXBOOT_BUILD)")
    tree = dest.with_suffix(".tree")
    shutil.rmtree(tree, ignore_errors=True)
    store = tree / "store"
    (store / KERNEL_NAME).mkdir(parents=True)
    shutil.copy2(kern.vmlinuz, store / KERNEL_NAME / "bzImage")
    # The nixboot package as the install rules lay it out (bin/, lib/systemd/system,
    # libexec/nixboot/checks), assembled from the build and the source tree so a
    # partial build (no man page) is enough.
    pkg = store / NIXBOOT_PKG
    (pkg / "bin").mkdir(parents=True)
    shutil.copy2(nixboot, pkg / "bin/nixboot")
    shutil.copy2(stage1, pkg / "bin/nixboot-stage1")
    (pkg / "bin/nixboot-try").symlink_to("nixboot")
    for src, dst, mode in (
        (REPO / "cli/units", "lib/systemd/system", 0o644),
        (REPO / "cli/checks", "libexec/nixboot/checks", 0o755),
    ):
        if src.is_dir():
            (pkg / dst).mkdir(parents=True)
            for f in src.iterdir():
                if f.is_file():
                    shutil.copy2(f, pkg / dst / f.name)
                    (pkg / dst / f.name).chmod(mode)
    for v in VARIANTS:
        initrd = dest.parent / f"initrd-{v}"
        build_initrd(kern, v, stage1, initrd)
        write_toplevel(store, v, kern, initrd, bootloader, watchdog)
    for d in ["var/nix/profiles", "var/nix/gcroots"]:
        (tree / d).mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    run(["truncate", "-s", "512M", tmp])
    run(["mkfs.ext4", "-q", "-F", "-L", "nixstore", "-d", tree, tmp])
    tmp.rename(dest)
    shutil.rmtree(tree)
    return {v: store_path(v) for v in VARIANTS}


def nixboot_libraries() -> list:
    """(soname, resolved host path) of every shared library the built nixboot
    binary loads (ldd), the dynamic loader and libc's own aside."""
    binary = nixboot_build_dir() / "cli" / "nixboot"
    if not binary.exists():
        raise HarnessError(f"{binary}: not built (run scripts/build or set NIXBOOT_BUILD)")
    out = subprocess.run([program("ldd"), binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line)
        if m and not m.group(1).startswith(("libc.so", "libm.so", "ld-linux")):
            libs.append((m.group(1), Path(m.group(2)).resolve()))
    return sorted(libs)


def provide_libraries(libs: list, tree: Path) -> None:
    """Copies into the root tree's /usr/local/lib each of `libs` whose soname
    the tree's own library directories lack, and rebuilds the tree's
    ld.so.cache (ldconfig -r): the guest's nixboot then loads the libraries
    it was built against, as a Nix closure carries its own."""
    own = [tree / "usr/lib/x86_64-linux-gnu", tree / "lib/x86_64-linux-gnu", tree / "usr/lib", tree / "lib"]
    copied = []
    for soname, path in libs:
        if any((d / soname).exists() for d in own):
            continue
        dst = tree / "usr/local/lib" / soname
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dst)
        copied.append(soname)
    if copied:
        log(f"root image: the nixboot binary's {', '.join(copied)} (not in the suite) in /usr/local/lib")
        run(["ldconfig", "-r", tree])
