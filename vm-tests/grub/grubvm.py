"""Real GRUB under QEMU: boot disks for GRUB EFI (OVMF) and GRUB i386-pc
(SeaBIOS), a bounded one-QEMU-per-boot runner, and grubenv read-back.

Everything here is built from Debian's packages only (grub-efi-amd64-bin,
grub-pc-bin, ovmf, seabios, qemu-system-x86, mtools, dosfstools, fdisk,
e2fsprogs). No loop devices, no grub-install: the disk is assembled from a
partition image with `dd`, boot.img goes into the MBR code area (the
partition table bytes are kept) and core.img into the post-MBR gap.

Disk layout (both firmwares, so the guest sees the same /dev/vda1):
  MBR, partition 1 from 1 MiB, type 0xEF (EFI) or 0x0C/0x83 (BIOS),
  a FAT32 or ext4 filesystem holding the GRUB "boot directory":
     /grub/grub.cfg, /grub/grubenv, /kernels/...       (prefix (hd0,msdos1)/grub)
  EFI:  /EFI/BOOT/BOOTX64.EFI  (grub-mkimage -O x86_64-efi, prefix /grub)
  BIOS: boot.img in MBR bytes 0..439, core.img at LBA 1
        (grub-mkimage -O i386-pc, prefix (hd0,msdos1)/grub)
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SECTOR = 512
PART_START_SECTOR = 2048  # 1 MiB: leaves the post-MBR gap for core.img

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SEABIOS = Path("/usr/share/seabios/bios-256k.bin")
GRUB_PC_DIR = Path("/usr/lib/grub/i386-pc")

# Modules built into the GRUB images. Everything GRUB needs at run time is
# embedded, so the boot filesystem only carries grub.cfg and grubenv.
COMMON_MODULES = [
    "part_msdos", "part_gpt", "fat", "ext2", "loadenv", "linux", "normal",
    "test", "echo", "configfile", "reboot", "sleep", "halt", "search",
    "search_fs_file", "search_fs_uuid", "search_label", "serial", "terminal",
    "cat", "ls",
]
EFI_MODULES = COMMON_MODULES + ["efi_gop"]
BIOS_MODULES = COMMON_MODULES + ["biosdisk"]


class VmError(Exception):
    """A step of building or booting a VM failed; the message says which."""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs a host command; a failure raises with the command and its stderr."""
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    env.update(kw.pop("env", {}))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise VmError(f"{' '.join(map(str, cmd))}: exit {p.returncode}: "
                      f"{(p.stderr or p.stdout).strip()}")
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
        files = subprocess.run(["find", "."], cwd=root, capture_output=True,
                               text=True, check=True).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                              input=files.encode(), capture_output=True, check=True).stdout
        gz = subprocess.run(["gzip", "-1", "-n"], input=cpio, capture_output=True,
                            check=True).stdout
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(gz)
        tmp.rename(path)


# --------------------------------------------------------------------------
# Boot disk

@dataclasses.dataclass
class Disk:
    """A GRUB boot disk image and how to reach its boot filesystem."""
    image: Path
    firmware: str          # "efi" or "bios"
    fs: str                # "fat" or "ext4"
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
                capture_output=True, check=True).stdout
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
            part = self._extract_partition(Path(d))
            subprocess.run(["debugfs", "-w", "-R", f"rm {path}", str(part)],
                           capture_output=True)
            run(["debugfs", "-w", "-R", f"write {src} {path}", str(part)])
            self._put_partition(part)

    def _part_size(self) -> int:
        return self.image.stat().st_size - self.part_offset

    def _extract_partition(self, d: Path) -> Path:
        part = d / "part.img"
        run(["dd", f"if={self.image}", f"of={part}", "bs=1M",
             f"skip={self.part_offset}", "iflag=skip_bytes", "status=none",
             "conv=sparse"])
        return part

    def _put_partition(self, part: Path) -> None:
        run(["dd", f"if={part}", f"of={self.image}", "bs=1M",
             f"seek={self.part_offset}", "oflag=seek_bytes", "conv=notrunc,sparse",
             "status=none"])

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


def _mkimage_efi(out: Path) -> None:
    run(["grub-mkimage", "-O", "x86_64-efi", "-o", str(out), "-p", "/grub"] + EFI_MODULES)


def _mkimage_bios(out: Path) -> None:
    run(["grub-mkimage", "-O", "i386-pc", "-o", str(out), "-p", "(hd0,msdos1)/grub"]
        + BIOS_MODULES)


def make_disk(image: Path, firmware: str, files: dict[str, Path], fs: str = "fat",
              size_mb: int = 128) -> Disk:
    """Builds a bootable GRUB disk: MBR partition 1 with `fs` holding `files`
    (boot-fs path -> host path) plus the firmware's GRUB image. An empty
    1024-byte /grub/grubenv is created unless files has one."""
    if firmware not in ("efi", "bios"):
        raise VmError(f"firmware {firmware!r}: expected efi or bios")
    if fs not in ("fat", "ext4"):
        raise VmError(f"filesystem {fs!r}: expected fat or ext4")
    if firmware == "efi" and fs != "fat":
        raise VmError("GRUB EFI boots from the ESP: fs must be fat")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        part = tmp / "part.img"
        part_bytes = size_mb * 1024 * 1024 - PART_START_SECTOR * SECTOR
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
        if firmware == "efi":
            (tree / "EFI" / "BOOT").mkdir(parents=True)
            _mkimage_efi(tree / "EFI" / "BOOT" / "BOOTX64.EFI")
        if fs == "fat":
            run(["mkfs.vfat", "-F", "32", "-n", "NIXBOOT", "-C", str(part),
                 str(part_bytes // 1024)])
            for top in sorted(tree.iterdir()):
                run(["mcopy", "-s", "-i", str(part), str(top), "::/"])
        else:
            with open(part, "wb") as f:
                f.truncate(part_bytes)
            run(["mkfs.ext4", "-q", "-F", "-L", "nixboot", "-d", str(tree), str(part)])
        # MBR partition table, then the filesystem at 1 MiB.
        with open(image.with_suffix(".tmp"), "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        ptype = "ef" if firmware == "efi" else ("c" if fs == "fat" else "83")
        run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image.with_suffix(".tmp"))],
            input=f"label: dos\n{PART_START_SECTOR},,{ptype},*\n")
        run(["dd", f"if={part}", f"of={image.with_suffix('.tmp')}", "bs=1M", "seek=1",
             "conv=notrunc,sparse", "status=none"])
        if firmware == "bios":
            _install_bios_boot(image.with_suffix(".tmp"), tmp)
        image.with_suffix(".tmp").rename(image)
    return Disk(image=image, firmware=firmware, fs=fs)


def _install_bios_boot(image: Path, tmp: Path) -> None:
    """boot.img's code into the MBR (bytes 0..439: the disk signature and the
    partition table at 440..511 stay), core.img into sectors 1.. of the gap.
    boot.img's default kernel sector is 1, and grub-mkimage -O i386-pc
    already starts core.img with diskboot.img whose blocklist covers the
    rest of the image from sector 2, so no patching is needed."""
    core = tmp / "core.img"
    _mkimage_bios(core)
    core_sectors = (core.stat().st_size + SECTOR - 1) // SECTOR
    if 1 + core_sectors > PART_START_SECTOR:
        raise VmError(f"core.img is {core_sectors} sectors: does not fit the post-MBR gap")
    boot = (GRUB_PC_DIR / "boot.img").read_bytes()
    if len(boot) != SECTOR:
        raise VmError(f"{GRUB_PC_DIR}/boot.img: {len(boot)} bytes, expected 512")
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
    ended: str   # "exited" (guest poweroff/reset with -no-reboot), "marker", "timeout"
    text: str

    def grep(self, pattern: str) -> list[str]:
        return re.findall(pattern, self.text)


class Machine:
    """A VM with persistent disks (and OVMF vars for EFI) booted once per
    call to boot(); -no-reboot turns every guest reset into a QEMU exit, so
    each boot has its own log and its own time bound."""

    def __init__(self, workdir: Path, disk: Disk, extra_drives: list[Path] | None = None,
                 memory_mb: int = 512, watchdog: bool = True):
        self.workdir = workdir
        self.disk = disk
        self.extra_drives = extra_drives or []
        self.memory_mb = memory_mb
        self.watchdog = watchdog
        self.boots: list[Boot] = []
        workdir.mkdir(parents=True, exist_ok=True)
        self.vars = workdir / "OVMF_VARS.fd"
        if disk.firmware == "efi" and not self.vars.exists():
            shutil.copy2(OVMF_VARS, self.vars)

    def qemu_command(self) -> list[str]:
        cmd = ["qemu-system-x86_64", "-machine", "q35" if self.disk.firmware == "efi" else "pc",
               "-m", str(self.memory_mb), "-smp", "1", "-display", "none",
               "-no-reboot", "-nodefaults", "-monitor", "none"]
        if self.disk.firmware == "efi":
            cmd += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,file={self.vars}"]
        else:
            cmd += ["-bios", str(SEABIOS)]
        cmd += ["-drive", f"if=virtio,format=raw,file={self.disk.image}"]
        for d in self.extra_drives:
            cmd += ["-drive", f"if=virtio,format=raw,file={d}"]
        if self.watchdog:
            cmd += ["-device", "i6300esb", "-action", "watchdog=reset"]
        return cmd

    def boot(self, timeout: float, until: str | None = None) -> Boot:
        """Boots once. Returns when QEMU exits (guest poweroff or reboot), when
        `until` (a regex) appears on the serial console (QEMU is then killed),
        or after `timeout` seconds (QEMU killed, ended="timeout")."""
        n = len(self.boots) + 1
        log = self.workdir / f"boot-{n:02d}.log"
        log.write_bytes(b"")
        cmd = self.qemu_command() + ["-serial", f"file:{log}"]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ended = "timeout"
        pattern = re.compile(until) if until else None
        try:
            while time.monotonic() - start < timeout:
                if proc.poll() is not None:
                    ended = "exited"
                    break
                if pattern and pattern.search(log.read_text(errors="replace")):
                    ended = "marker"
                    break
                time.sleep(0.25)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.stderr and proc.stderr.close()
        if ended == "exited" and proc.returncode != 0:
            raise VmError(f"boot {n}: qemu exited {proc.returncode}: {err.strip()}")
        b = Boot(number=n, log=log, seconds=time.monotonic() - start, ended=ended,
                 text=log.read_text(errors="replace"))
        self.boots.append(b)
        return b
