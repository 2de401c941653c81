"""Real GRUB under QEMU: boot disks for GRUB EFI (OVMF) and GRUB i386-pc
(SeaBIOS), a bounded one-QEMU-per-boot runner, and grubenv read-back.

Everything here is built from Debian's packages only (grub-efi-amd64-bin,
grub-pc-bin, ovmf, seabios, qemu-system-x86, mtools, dosfstools, fdisk,
e2fsprogs). No loop devices, no grub-install: the disk is assembled from a
partition image with `dd`, boot.img goes into the MBR code area (the
partition table bytes are kept) and core.img into the post-MBR gap.

Disk layout (both firmwares, so the guest sees the same /dev/vda1):
  MBR, partition 1 from 1 MiB, type 0xEF (EFI) or 0x0C/0x83 (BIOS),
  a FAT32, ext4 or (BIOS) btrfs filesystem holding the GRUB "boot directory":
     /grub/grub.cfg, /grub/grubenv, /kernels/...       (prefix (hd0,msdos1)/grub)
  EFI:  /EFI/BOOT/BOOTX64.EFI  (grub-mkimage -O x86_64-efi, prefix /grub)
  BIOS: boot.img in MBR bytes 0..439, core.img at LBA 1
        (grub-mkimage -O i386-pc, prefix (hd0,msdos1)/grub)
EFI with a non-FAT boot directory (esp_mb > 0): partition 1 is a FAT32 ESP
  holding only /EFI/BOOT/BOOTX64.EFI, partition 2 (type 0x83) the boot
  directory; the image's embedded config finds partition 2 by filesystem
  UUID and sets prefix=($root)/grub, as grub-install's load.cfg does for a
  separate /boot.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.util import program  # noqa: E402  (every program is in scripts/requirements)

SECTOR = 512
PART_START_SECTOR = 2048  # 1 MiB: leaves the post-MBR gap for core.img

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SEABIOS = Path("/usr/share/seabios/bios-256k.bin")
GRUB_PC_DIR = Path("/usr/lib/grub/i386-pc")

# Modules built into the GRUB images. Everything GRUB needs at run time is
# embedded, so the boot filesystem only carries grub.cfg and grubenv.
COMMON_MODULES = [
    "part_msdos",
    "part_gpt",
    "fat",
    "ext2",
    "loadenv",
    "linux",
    "normal",
    "test",
    "echo",
    "configfile",
    "reboot",
    "sleep",
    "halt",
    "search",
    "search_fs_file",
    "search_fs_uuid",
    "search_label",
    "serial",
    "terminal",
    "cat",
    "ls",
    "btrfs",
]
EFI_MODULES = COMMON_MODULES + ["efi_gop"]
BIOS_MODULES = COMMON_MODULES + ["biosdisk"]


class VmError(Exception):
    """A step of building or booting a VM failed; the message says which."""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs a host command; a failure raises with the command and its stderr."""
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    env.update(kw.pop("env", {}))
    p = subprocess.run([program(cmd[0])] + list(cmd[1:]), env=env, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise VmError(f"{' '.join(map(str, cmd))}: exit {p.returncode}: " f"{(p.stderr or p.stdout).strip()}")
    return p


# --------------------------------------------------------------------------
# Kernel (cached under the build directory)


def kernel(cache: Path) -> tuple[Path, Path]:
    """Returns (vmlinuz, module tree root) of the Debian generic kernel that
    linux-image-amd64 currently depends on, downloading it once into cache."""
    cache.mkdir(parents=True, exist_ok=True)
    dep = run(["apt-cache", "depends", "linux-image-amd64"]).stdout
    m = re.search(r"Depends: (linux-image-[0-9][^\s]*-amd64)", dep)
    if not m:
        raise VmError(f"cannot resolve linux-image-amd64's kernel from: {dep!r}")
    pkg = m.group(1)
    tree = cache / pkg
    version = pkg.removeprefix("linux-image-")
    vmlinuz = tree / "boot" / f"vmlinuz-{version}"
    if not vmlinuz.exists():
        dl = cache / "dl"
        dl.mkdir(exist_ok=True)
        run(["apt-get", "download", pkg], cwd=dl)
        deb = next(dl.glob(f"{pkg}_*.deb"))
        tmp = cache / (pkg + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(tree)
    return vmlinuz, tree / "lib" / "modules" / version


# --------------------------------------------------------------------------
# initrd


def make_initrd(path: Path, init_script: str, extra: dict[str, Path] | None = None) -> None:
    """Writes a gzip'd newc cpio with static busybox as /bin/busybox, the
    given /init script and extra files (guest path -> host path)."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for sub in ["bin", "dev", "proc", "sys", "mnt", "tmp"]:
            (root / sub).mkdir()
        shutil.copy2("/usr/bin/busybox", root / "bin" / "busybox")
        (root / "bin" / "sh").symlink_to("busybox")
        (root / "init").write_text(init_script)
        (root / "init").chmod(0o755)
        for guest, host in (extra or {}).items():
            dst = root / guest.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(host, dst)
        files = subprocess.run([program("find"), "."], cwd=root, capture_output=True, text=True, check=True).stdout
        cpio = subprocess.run(
            [program("cpio"), "-o", "-H", "newc", "--quiet"],
            cwd=root,
            input=files.encode(),
            capture_output=True,
            check=True,
        ).stdout
        gz = subprocess.run([program("gzip"), "-1", "-n"], input=cpio, capture_output=True, check=True).stdout
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(gz)
        tmp.rename(path)


# --------------------------------------------------------------------------
# Boot disk


@dataclasses.dataclass
class Disk:
    """A GRUB boot disk image and how to reach its boot filesystem."""

    image: Path
    firmware: str  # "efi" or "bios"
    fs: str  # "fat" or "ext4"
    part_offset: int = PART_START_SECTOR * SECTOR

    # -- reading and writing files on the boot filesystem from the host --
    def _mtools_img(self) -> str:
        return f"{self.image}@@{self.part_offset}"

    def read(self, path: str) -> bytes:
        """Reads a file of the boot filesystem (path like /grub/grubenv)."""
        if self.fs == "fat":
            return subprocess.run(
                ["mtype", "-i", self._mtools_img(), "::" + path],
                env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
                capture_output=True,
                check=True,
            ).stdout
        if self.fs == "btrfs":
            with tempfile.TemporaryDirectory() as d:
                part = self._extract_partition(Path(d))
                out = Path(d) / "restore"
                out.mkdir()
                run(["btrfs", "restore", str(part), str(out)])
                f = out / path.lstrip("/")
                if not f.exists():
                    raise VmError(f"{self.image}: {path} not found on the btrfs partition")
                return f.read_bytes()
        with tempfile.TemporaryDirectory() as d:
            part = self._extract_partition(Path(d))
            out = Path(d) / "out"
            run(["debugfs", "-R", f"dump -p {path} {out}", str(part)])
            if not out.exists():
                raise VmError(f"{self.image}: {path} not found on the ext4 partition")
            return out.read_bytes()

    def write(self, path: str, data: bytes) -> None:
        """Replaces a file of the boot filesystem (host side, VM not running)."""
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "f"
            src.write_bytes(data)
            if self.fs == "fat":
                run(["mcopy", "-o", "-i", self._mtools_img(), str(src), "::" + path])
                return
            if self.fs != "ext4":
                raise VmError(
                    f"{self.image}: writing files on {self.fs} from the host "
                    "is not supported (build the disk with them instead)"
                )
            part = self._extract_partition(Path(d))
            subprocess.run([program("debugfs"), "-w", "-R", f"rm {path}", str(part)], capture_output=True)
            run(["debugfs", "-w", "-R", f"write {src} {path}", str(part)])
            self._put_partition(part)

    def _part_size(self) -> int:
        return self.image.stat().st_size - self.part_offset

    def _extract_partition(self, d: Path) -> Path:
        part = d / "part.img"
        run(
            [
                "dd",
                f"if={self.image}",
                f"of={part}",
                "bs=1M",
                f"skip={self.part_offset}",
                "iflag=skip_bytes",
                "status=none",
                "conv=sparse",
            ]
        )
        return part

    def _put_partition(self, part: Path) -> None:
        run(
            [
                "dd",
                f"if={part}",
                f"of={self.image}",
                "bs=1M",
                f"seek={self.part_offset}",
                "oflag=seek_bytes",
                "conv=notrunc,sparse",
                "status=none",
            ]
        )

    def grubenv(self, path: str = "/grub/grubenv") -> dict[str, str]:
        """Reads the env block back with the reference tool, grub-editenv."""
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "grubenv"
            f.write_bytes(self.read(path))
            if f.stat().st_size != 1024:
                raise VmError(f"{self.image}:{path}: {f.stat().st_size} bytes, not 1024")
            out = run(["grub-editenv", str(f), "list"]).stdout
        env = {}
        for line in out.splitlines():
            k, _, v = line.partition("=")
            env[k] = v
        return env

    def set_grubenv(self, values: dict[str, str], path: str = "/grub/grubenv") -> None:
        """Writes a fresh env block made by grub-editenv with these values."""
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "grubenv"
            run(["grub-editenv", str(f), "create"])
            if values:
                run(["grub-editenv", str(f), "set"] + [f"{k}={v}" for k, v in values.items()])
            self.write(path, f.read_bytes())


def _mkimage(
    out: Path, fmt: str, prefix: str, modules: list, early_cfg: str | None = None, grub_dir: Path | None = None
) -> None:
    """grub-mkimage with every module built in and, when given, an embedded
    early config (written beside `out` for the call, then removed). grub_dir:
    the platform's module directory of another GRUB build (a newer Debian
    package's /usr/lib/grub/x86_64-efi); default this machine's."""
    extra = ["-d", str(grub_dir)] if grub_dir else []
    cfg = out.with_name("early.cfg")
    if early_cfg is not None:
        cfg.write_text(early_cfg)
        extra += ["-c", str(cfg)]
    try:
        run(["grub-mkimage", "-O", fmt, "-o", str(out), "-p", prefix] + extra + modules)
    finally:
        if early_cfg is not None:
            cfg.unlink(missing_ok=True)


def _mkimage_efi(out: Path, early_cfg: str | None = None, grub_dir: Path | None = None) -> None:
    _mkimage(out, "x86_64-efi", "/grub", EFI_MODULES, early_cfg, grub_dir)


def _mkimage_bios(out: Path, early_cfg: str | None = None, grub_dir: Path | None = None) -> None:
    _mkimage(out, "i386-pc", "(hd0,msdos1)/grub", BIOS_MODULES, early_cfg, grub_dir)


def make_disk(
    image: Path,
    firmware: str,
    files: dict[str, Path],
    fs: str = "fat",
    size_mb: int = 128,
    label: str = "ESP",
    bios_early_cfg: str | None = None,
    esp_mb: int = 0,
    esp_label: str = "EFISYS",
    grub_dir: Path | None = None,
) -> Disk:
    """Builds a bootable GRUB disk: MBR partition 1 with `fs` (labelled
    `label`) holding `files` (boot-fs path -> host path) plus the firmware's
    GRUB image. An empty 1024-byte /grub/grubenv is created unless files has
    one. bios_early_cfg: a config embedded in core.img (run before
    $prefix/grub.cfg, which it must load itself).
    EFI with fs other than fat needs esp_mb: partition 1 is then a FAT ESP
    of esp_mb MiB (labelled esp_label) with only the GRUB image, and the
    boot directory is partition 2 (see the module docstring).
    grub_dir: GRUB's module directory for the firmware's platform (another
    GRUB build, unpacked); default this machine's."""
    if firmware not in ("efi", "bios"):
        raise VmError(f"firmware {firmware!r}: expected efi or bios")
    if fs not in ("fat", "ext4", "btrfs"):
        raise VmError(f"filesystem {fs!r}: expected fat, ext4 or btrfs")
    split = firmware == "efi" and fs != "fat"
    if split and esp_mb <= 0:
        raise VmError("GRUB EFI boots from a FAT ESP: a non-FAT boot directory needs esp_mb")
    if not split and esp_mb:
        raise VmError("esp_mb is only for GRUB EFI with a non-FAT boot directory")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        part = tmp / "part.img"
        part_start = PART_START_SECTOR + esp_mb * 1024 * 1024 // SECTOR
        part_bytes = size_mb * 1024 * 1024 - part_start * SECTOR
        fs_uuid = str(uuid.uuid4())
        tree = tmp / "tree"
        tree.mkdir()
        for dest, src in files.items():
            t = tree / dest.lstrip("/")
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, t)
        env = tree / "grub" / "grubenv"
        if not env.exists():
            env.parent.mkdir(parents=True, exist_ok=True)
            run(["grub-editenv", str(env), "create"])
        esp_tree = tmp / "esp" if split else tree
        if firmware == "efi":
            (esp_tree / "EFI" / "BOOT").mkdir(parents=True)
            _mkimage_efi(
                esp_tree / "EFI" / "BOOT" / "BOOTX64.EFI",
                f"search --no-floppy --fs-uuid --set=root {fs_uuid}\n" "set prefix=($root)/grub\n" if split else None,
                grub_dir,
            )
        if split:
            esp = tmp / "esp.img"
            run(["mkfs.vfat", "-F", "32", "-n", esp_label, "-C", str(esp), str(esp_mb * 1024)])
            run(["mcopy", "-s", "-i", str(esp), str(esp_tree / "EFI"), "::/"])
        if fs == "fat":
            run(["mkfs.vfat", "-F", "32", "-n", label, "-C", str(part), str(part_bytes // 1024)])
            for top in sorted(tree.iterdir()):
                run(["mcopy", "-s", "-i", str(part), str(top), "::/"])
        elif fs == "ext4":
            with open(part, "wb") as f:
                f.truncate(part_bytes)
            run(["mkfs.ext4", "-q", "-F", "-L", label, "-U", fs_uuid, "-d", str(tree), str(part)])
        else:
            with open(part, "wb") as f:
                f.truncate(part_bytes)
            run(["mkfs.btrfs", "-q", "-f", "-L", label, "-U", fs_uuid, "--rootdir", str(tree), str(part)])
        # MBR partition table, then the filesystem(s) from 1 MiB.
        with open(image.with_suffix(".tmp"), "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        if split:
            table = f"{PART_START_SECTOR},{part_start - PART_START_SECTOR},ef,*\n" f"{part_start},,83\n"
        else:
            ptype = "ef" if firmware == "efi" else ("c" if fs == "fat" else "83")
            table = f"{PART_START_SECTOR},,{ptype},*\n"
        run(
            ["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image.with_suffix(".tmp"))],
            input="label: dos\n" + table,
        )
        if split:
            run(
                [
                    "dd",
                    f"if={esp}",
                    f"of={image.with_suffix('.tmp')}",
                    "bs=1M",
                    "seek=1",
                    "conv=notrunc,sparse",
                    "status=none",
                ]
            )
        run(
            [
                "dd",
                f"if={part}",
                f"of={image.with_suffix('.tmp')}",
                "bs=1M",
                f"seek={part_start * SECTOR}",
                "oflag=seek_bytes",
                "conv=notrunc,sparse",
                "status=none",
            ]
        )
        if firmware == "bios":
            _install_bios_boot(image.with_suffix(".tmp"), tmp, bios_early_cfg, grub_dir)
        image.with_suffix(".tmp").rename(image)
    return Disk(image=image, firmware=firmware, fs=fs, part_offset=part_start * SECTOR)


def _install_bios_boot(image: Path, tmp: Path, early_cfg: str | None, grub_dir: Path | None = None) -> None:
    """boot.img's code into the MBR (bytes 0..439: the disk signature and the
    partition table at 440..511 stay), core.img into sectors 1.. of the gap.
    boot.img's default kernel sector is 1, and grub-mkimage -O i386-pc
    already starts core.img with diskboot.img whose blocklist covers the
    rest of the image from sector 2, so no patching is needed."""
    core = tmp / "core.img"
    _mkimage_bios(core, early_cfg, grub_dir)
    pc_dir = grub_dir or GRUB_PC_DIR
    core_sectors = (core.stat().st_size + SECTOR - 1) // SECTOR
    if 1 + core_sectors > PART_START_SECTOR:
        raise VmError(f"core.img is {core_sectors} sectors: does not fit the post-MBR gap")
    boot = (pc_dir / "boot.img").read_bytes()
    if len(boot) != SECTOR:
        raise VmError(f"{pc_dir}/boot.img: {len(boot)} bytes, expected 512")
    with open(image, "r+b") as f:
        mbr = bytearray(f.read(SECTOR))
        if mbr[510:512] != b"\x55\xaa":
            raise VmError(f"{image}: no MBR signature after sfdisk")
        mbr[0:440] = boot[0:440]
        f.seek(0)
        f.write(mbr)
        f.seek(SECTOR)
        f.write(core.read_bytes())


# --------------------------------------------------------------------------
# QEMU: one process per boot, bounded


@dataclasses.dataclass
class Boot:
    """What one boot printed on the serial console and how it ended."""

    number: int
    log: Path
    seconds: float
    ended: str  # "exited" (guest poweroff/reset with -no-reboot), "marker", "timeout", "killed"
    text: str

    def grep(self, pattern: str) -> list[str]:
        return re.findall(pattern, self.text)


class Running:
    """One boot in progress: QEMU with ttyS0 logged to a file and, with a
    backdoor, ttyS1 on a unix socket read by a background thread."""

    def __init__(self, machine: "Machine", number: int, cmd: list[str], log: Path, backdoor: Path | None):
        self.machine = machine
        self.number = number
        self.log = log
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.bd_buf = b""
        self.bd_lock = threading.Lock()
        self.bd_sock: socket.socket | None = None
        if backdoor is not None:
            deadline = time.monotonic() + 10
            while True:
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(str(backdoor))
                    self.bd_sock = s
                    break
                except OSError:
                    s.close()
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            if self.bd_sock is not None:
                threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        assert self.bd_sock is not None
        while True:
            try:
                data = self.bd_sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self.bd_lock:
                self.bd_buf += data

    def where(self) -> str:
        return f"boot {self.number} ({self.log})"

    def console(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_console(self, pattern: str, timeout: float) -> re.Match:
        """Waits for a regex on the serial console; raises if QEMU exits or
        the time runs out first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console())
            if m:
                return m
            if self.proc.poll() is not None:
                m = rx.search(self.console())
                if m:
                    return m
                raise VmError(f"{self.where()}: guest stopped before /{pattern}/ appeared on the console")
            if time.monotonic() > deadline:
                raise VmError(f"{self.where()}: /{pattern}/ not on the console within {timeout:.0f}s")
            time.sleep(0.2)

    def wait_backdoor(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.bd_lock:
                if b"NIXBOOT-VM-BACKDOOR-READY" in self.bd_buf:
                    return
            if self.proc.poll() is not None:
                raise VmError(f"{self.where()}: guest stopped before its backdoor shell came up")
            if time.monotonic() > deadline:
                raise VmError(f"{self.where()}: backdoor shell not up within {timeout:.0f}s")
            time.sleep(0.2)

    def shell(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Runs a shell command in the guest (root, via the backdoor on ttyS1);
        returns (exit status, output)."""
        if self.bd_sock is None:
            raise VmError(f"{self.where()}: no backdoor connection")
        tag = f"__NIXBOOT_VM_{time.monotonic_ns()}__"
        with self.bd_lock:
            self.bd_buf = b""
        self.bd_sock.sendall(f'( {command} ) 2>&1; echo "{tag} $?"\n'.encode())
        rx = re.compile(rf"{tag} (\d+)\r?\n".encode())
        deadline = time.monotonic() + timeout
        while True:
            with self.bd_lock:
                m = rx.search(self.bd_buf)
                if m:
                    out = self.bd_buf[: m.start()].decode(errors="replace")
                    return int(m.group(1)), out.replace("\r\n", "\n")
            if self.proc.poll() is not None:
                raise VmError(f"{self.where()}: guest stopped while running {command!r}")
            if time.monotonic() > deadline:
                raise VmError(f"{self.where()}: {command!r} did not finish within {timeout:.0f}s")
            time.sleep(0.1)

    def wait_exit(self, timeout: float) -> Boot:
        """Waits for QEMU to exit (guest poweroff or reset); on timeout kills it."""
        try:
            self.proc.wait(timeout)
            ended = "exited"
        except subprocess.TimeoutExpired:
            ended = "timeout"
        return self._finish(ended)

    def kill(self, ended: str = "killed") -> Boot:
        return self._finish(ended)

    def _finish(self, ended: str) -> Boot:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.bd_sock is not None:
            self.bd_sock.close()
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        if self.proc.stderr:
            self.proc.stderr.close()
        if ended == "exited" and self.proc.returncode != 0:
            raise VmError(f"{self.where()}: qemu exited {self.proc.returncode}: {err.strip()}")
        b = Boot(
            number=self.number, log=self.log, seconds=time.monotonic() - self.start, ended=ended, text=self.console()
        )
        self.machine.boots.append(b)
        self.machine.running = None
        return b


class Machine:
    """A VM with persistent disks (and OVMF vars for EFI) booted once per
    start(); -no-reboot turns every guest reset into a QEMU exit, so each
    boot has its own log and its own time bound. extra_drives: (path, format)
    of further virtio disks (the harness's root and /nix overlays)."""

    def __init__(
        self,
        workdir: Path,
        disk: Disk,
        extra_drives: list[tuple[Path, str]] | None = None,
        memory_mb: int = 512,
        watchdog: bool = True,
        backdoor: bool = False,
    ):
        self.workdir = workdir
        self.disk = disk
        self.extra_drives = extra_drives or []
        self.memory_mb = memory_mb
        self.watchdog = watchdog
        self.backdoor = workdir / "backdoor.sock" if backdoor else None
        self.boots: list[Boot] = []
        self.running: Running | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.vars = workdir / "OVMF_VARS.fd"
        if disk.firmware == "efi" and not self.vars.exists():
            shutil.copy2(OVMF_VARS, self.vars)

    def qemu_command(self) -> list[str]:
        cmd = [
            "qemu-system-x86_64",
            "-machine",
            "q35" if self.disk.firmware == "efi" else "pc",
            "-m",
            str(self.memory_mb),
            "-smp",
            "1",
            "-display",
            "none",
            "-no-reboot",
            "-nodefaults",
            "-monitor",
            "none",
        ]
        if self.disk.firmware == "efi":
            cmd += [
                "-drive",
                f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                "-drive",
                f"if=pflash,format=raw,file={self.vars}",
            ]
        else:
            cmd += ["-bios", str(SEABIOS)]
        # The GRUB disk is the firmware's first boot device, hence GRUB's (hd0).
        cmd += [
            "-drive",
            f"if=none,id=boot,format=raw,file={self.disk.image}",
            "-device",
            "virtio-blk-pci,drive=boot,bootindex=0",
        ]
        for i, (path, fmt) in enumerate(self.extra_drives):
            cmd += ["-drive", f"if=none,id=d{i},format={fmt},file={path}", "-device", f"virtio-blk-pci,drive=d{i}"]
        if self.watchdog:
            cmd += ["-device", "i6300esb", "-action", "watchdog=reset"]
        return cmd

    def start(self) -> Running:
        if self.running is not None:
            raise VmError(f"{self.workdir}: boot {self.running.number} is still running")
        n = len(self.boots) + 1
        log = self.workdir / f"boot-{n:02d}.log"
        log.write_bytes(b"")
        cmd = self.qemu_command() + ["-serial", f"file:{log}"]
        if self.backdoor is not None:
            self.backdoor.unlink(missing_ok=True)
            cmd += [
                "-chardev",
                f"socket,id=backdoor,path={self.backdoor},server=on,wait=off",
                "-serial",
                "chardev:backdoor",
            ]
        self.running = Running(self, n, cmd, log, self.backdoor)
        return self.running

    def boot(self, timeout: float, until: str | None = None) -> Boot:
        """Boots once. Returns when QEMU exits (guest poweroff or reboot), when
        `until` (a regex) appears on the serial console (QEMU is then killed,
        ended="marker"), or after `timeout` seconds (ended="timeout")."""
        r = self.start()
        if until is None:
            return r.wait_exit(timeout)
        try:
            r.wait_console(until, timeout)
        except VmError:
            return r.wait_exit(0) if r.proc.poll() is not None else r.kill("timeout")
        return r.kill("marker")
