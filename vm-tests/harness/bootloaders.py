"""Bootloader plug-ins. A plug-in knows how to make the boot disk of a fresh
machine (with generation 1 installed the way the stock NixOS installer would
have left it), which firmware to boot it with, and which scenarios apply.

Other plug-ins (GRUB EFI, GRUB BIOS) live in vm-tests/grub/*.py and call
register(); see vm-tests/README.md, "Plugging in a bootloader".
"""
import os
import shutil
from pathlib import Path

from .images import Kernel, store_path
from .util import HarnessError, mtools_env, run

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"  # the EFI System Partition's GPT type
ESP_START = 1 << 20  # bytes: the ESP partition's offset in the systemd-boot disk
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")

BOOTLOADERS: dict = {}


def register(cls):
    """Class decorator: makes a Bootloader subclass available to vm-tests/run."""
    BOOTLOADERS[cls.name] = cls
    return cls


class Bootloader:
    """The plug-in interface (override everything marked 'plug-in point')."""

    name = "?"  # plug-in point: scenario prefix, e.g. "grub-efi"
    nixboot_name = "?"  # plug-in point: nixboot's --bootloader value
    scenarios: set = set()  # plug-in point: scenario numbers that apply ({"1", "2", ...})
    root_suite = "bookworm"  # plug-in point: the Debian suite of the guest's root (images.ROOT_SUITES)
    # plug-in point: nixboot.watchdog= of the generations (seconds): what a
    # trial boot has from nixboot-stage1 arming the watchdog to
    # nixboot-watchdog.service feeding it.
    watchdog = 20

    def __init__(self, workdir: Path):
        self.workdir = workdir  # per-run directory for the base boot image

    def build_boot_image(self, kern: Kernel, generation1: str) -> Path:
        """Plug-in point: a raw disk image with the bootloader and the stock entry of
        generation 1 (toplevel store path `generation1`); its boot filesystem carries
        the label ESP (the guest mounts LABEL=ESP on /boot)."""
        raise NotImplementedError

    def firmware_args(self, machine_dir: Path) -> list:
        """Plug-in point: QEMU firmware arguments; persistent state lives in machine_dir."""
        raise NotImplementedError

    def guest_setup(self, machine) -> None:
        """Plug-in point: extra steps in the guest on the first boot (default: none)."""

    def disable_one_shot(self, ctx) -> None:
        """Plug-in point (scenario 6): take away the loader's one-shot so a trial
        can only run as a counted default."""
        raise NotImplementedError(f"{self.name}: scenario 6 needs disable_one_shot")

    def disk_interface(self) -> str:
        """Plug-in point: QEMU `if=` of the three disks (boot, root, /nix)."""
        return "virtio"

    def loader_version(self) -> str:
        """Plug-in point: the loader's name and version, shown in every PASS/FAIL
        line ("systemd-boot 257.13-1~deb13u1"); valid after build_boot_image."""
        return "?"


def host_package_version(package: str) -> str:
    """The installed version of a Debian package on this machine ("?" if none)."""
    out = run(["dpkg-query", "-W", "-f=${Version}", package], capture=True, check=False)
    return out.strip() or "?"


def debian_package(suite: str, package: str) -> tuple:
    """(unpacked directory, version) of `package` from Debian `suite`, fetched
    by scripts/debian-package into build/debian/ (cached there)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "debian-package"
    out = run([str(script), suite, package], capture=True)
    where, version = out.strip().splitlines()[-1].split(" ", 1)
    return Path(where).resolve(), version


def mtools(*args):
    run(list(args), env=mtools_env())


def stock_nixos_entry(generation: int, toplevel: str, kernel_file: str, initrd_file: str, params: list) -> str:
    """A BLS entry as NixOS's own systemd-boot installer writes it."""
    return (
        f"title NixOS\nversion Generation {generation} NixOS 24.11 (nixboot-vm)\n"
        f"linux /EFI/nixos/{kernel_file}\ninitrd /EFI/nixos/{initrd_file}\n"
        f"options init={toplevel}/init {' '.join(params)}\nmachine-id "
        f"5b8b0c2e9a2f4e4e8d0f1a2b3c4d5e6f\n"
    )


@register
class SystemdBoot(Bootloader):
    name = "systemd-boot"
    nixboot_name = "systemd-boot"
    scenarios = {"1", "2", "3", "4", "5", "6", "7", "9", "10", "11", "12", "d1", "d2", "d3", "d4", "d5"}
    EFI = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
    suite = None  # a Debian suite to take systemd-boot-efi from; None: this machine's
    multi_try_mode = "sort-order"  # how nixboot arms --tries 2 here (scenario 10)

    def loader_efi(self) -> Path:
        if self.suite is None:
            self._version = "systemd-boot " + host_package_version("systemd-boot-efi")
            return self.EFI
        where, version = debian_package(self.suite, "systemd-boot-efi")
        self._version = f"systemd-boot {version}"
        return where / str(self.EFI).lstrip("/")

    def loader_version(self) -> str:
        return getattr(self, "_version", "?")

    def build_boot_image(self, kern: Kernel, generation1: str) -> Path:
        from .images import BASE_PARAMS

        efi = self.loader_efi()
        if not efi.exists():
            raise HarnessError(f"{efi}: missing (apt-get install systemd-boot-efi)")
        # A GPT disk whose one partition is the ESP (type GUID, as on a real
        # machine): the loader sets LoaderDevicePartUUID from it, and
        # systemd-bless-boot and systemd-gpt-auto-generator find $BOOT by it.
        # An unpartitioned FAT disk boots too, but they fail to find it.
        img = self.workdir / "esp-systemd-boot.img"
        img.unlink(missing_ok=True)
        run(["truncate", "-s", "130M", img])
        run(["sfdisk", "-q", img], input=f"label: gpt\nstart={ESP_START // 512}, type={ESP_TYPE}, name=ESP\n")
        run(["mkfs.vfat", "-F", "32", "-n", "ESP", "--offset", str(ESP_START // 512), img, str(128 * 1024)])
        i = f"-i{img}@@{ESP_START}"
        mtools("mmd", i, "::/EFI", "::/EFI/BOOT", "::/EFI/systemd", "::/EFI/nixos", "::/loader", "::/loader/entries")
        mtools("mcopy", i, efi, "::/EFI/BOOT/BOOTX64.EFI")
        mtools("mcopy", i, efi, "::/EFI/systemd/systemd-bootx64.efi")
        stage = self.workdir / "esp-stage"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        kfile = "vm-linux-bzImage.efi"
        ifile = "vm-good-initrd.efi"
        nix_tree_initrd = self.workdir / "initrd-good"
        shutil.copy2(kern.vmlinuz, stage / kfile)
        shutil.copy2(nix_tree_initrd, stage / ifile)
        (stage / "loader.conf").write_text("timeout 0\ndefault nixos-generation-1.conf\n" "editor no\n")
        (stage / "nixos-generation-1.conf").write_text(stock_nixos_entry(1, generation1, kfile, ifile, BASE_PARAMS))
        mtools("mcopy", i, stage / kfile, stage / ifile, "::/EFI/nixos/")
        mtools("mcopy", i, stage / "loader.conf", "::/loader/loader.conf")
        mtools("mcopy", i, stage / "nixos-generation-1.conf", "::/loader/entries/")
        shutil.rmtree(stage)
        return img

    def disable_one_shot(self, ctx) -> None:
        """EFI variables read-only on every boot from now on (efivarfs remounted ro)."""
        ctx.sh(
            """set -e
cat > /etc/systemd/system/nixboot-vm-efivars-ro.service <<'EOT'
[Unit]
Description=VM test: EFI variables read-only (no one-shot, no persistent default)
DefaultDependencies=no
After=sys-firmware-efi-efivars.mount
Before=sysinit.target nixboot-check.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount -o remount,ro /sys/firmware/efi/efivars
[Install]
WantedBy=sysinit.target
EOT
systemctl enable nixboot-vm-efivars-ro.service
mount -o remount,ro /sys/firmware/efi/efivars
! touch /sys/firmware/efi/efivars/x-nixboot-vm-test 2>/dev/null"""
        )

    def firmware_args(self, machine_dir: Path) -> list:
        vars_copy = machine_dir / "OVMF_VARS.fd"
        if not vars_copy.exists():
            shutil.copy2(OVMF_VARS, vars_copy)
        return [
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,file={vars_copy}",
        ]


# NIXBOOT_VM_MATRIX_FULL=1: the whole loader matrix: the newest loaders run
# every scenario of their kind, the versions between scenarios 1, 2, 6 and 7.
# By default they run only the cells where the versions differ, to keep CI
# within its time.
MATRIX_FULL = os.environ.get("NIXBOOT_VM_MATRIX_FULL") == "1"
BETWEEN = {"1", "2", "6", "7"}


# Newer systemd-boot builds from Debian's other suites (scripts/debian-package),
# booted with the same guest. bookworm-backports has 254; Debian 13's 257.13
# is the loader whose entry IDs lost the counter within the 257 series;
# unstable has the newest.
@register
class SystemdBootBackports(SystemdBoot):
    name = "systemd-boot-bpo"
    suite = "bookworm-backports"
    scenarios = BETWEEN if MATRIX_FULL else set()


# Debian 13's loader with Debian 13's userspace: systemd 257's
# systemd-bless-boot and boot-complete.target run beside nixboot's check.
@register
class SystemdBootTrixie(SystemdBoot):
    name = "systemd-boot-trixie"
    suite = "trixie"
    root_suite = "trixie"
    # systemd 257 takes longer from switch-root to its first jobs than 252:
    # under TCG beside a second VM and a compiler, 19 s from the watchdog
    # being armed to "Queued start job" (boot log of scenario 1), and the
    # 20 s watchdog reset the guest before its feeder started.
    watchdog = 60
    scenarios = BETWEEN if MATRIX_FULL else {"1", "2"}


@register
class SystemdBootSid(SystemdBoot):
    name = "systemd-boot-sid"
    suite = "sid"
    scenarios = {"1", "2", "3", "4", "5", "6", "7", "9", "10"} if MATRIX_FULL else {"1", "10"}
    multi_try_mode = "preferred"  # 262 has `preferred` (LoaderFeatures bit 19)
