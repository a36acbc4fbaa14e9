"""A Debian disk image laid out like a Pi's card, built from Debian packages, cached by its inputs.

``base_image()`` returns a raw disk image (MBR: a FAT32 boot partition with ``cmdline.txt``, then
an ext4 root) made from a minimal ``debootstrap`` tree. The tree is built once per machine into
the cache (``$CAMNODE_VM_CACHE``, default ``~/.cache/camnode-vm``) under a hash of everything
that goes into it (suite, packages, the guest kernel's version, this file's setup steps) and the
finished image is cached beside it; each test flashes a copy of it with ``camnode-provision flash``.

The guest boots the host's Debian cloud kernel directly (qemu ``-kernel``/``-initrd``); its
modules are copied into the tree. ``AARCH64`` makes the same card for arm64 (a Pi's CPU), booted by
qemu-system-aarch64 under software emulation with Debian's arm64 cloud kernel (see
:mod:`tests.system.vmarm64`: its kernel, initramfs and the debootstrap second stage run in the VM).
Nothing is mounted: ``mkfs.ext4 -d`` and ``mkfs.vfat`` + mtools fill the partitions from folders, the
partition table is written here.

Cost: debootstrap once per machine (minutes, see the issue note); the image file, seconds.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import inspect
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.system import vmarm64

SUITE = "bookworm"


def apt_mirror(suite: str = SUITE, sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for ``suite`` (deb822 ``*.sources`` or
    ``sources.list``), "" when none: debootstrap takes its packages from where apt does."""
    for f in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in f.read_text(errors="replace").split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith(("#", " ")))
            if ("deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split()
                    and fields.get("URIs", "").split()):
                return fields["URIs"].split()[0]
    listing = sources / "sources.list"
    for line in (listing.read_text(errors="replace").splitlines() if listing.exists() else []):
        words = [w for w in line.split() if not w.startswith("[")]
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
            return words[1]
    return ""


#: where debootstrap gets the guest's packages: ``CAMNODE_VM_MIRROR``, else apt's own mirror
MIRROR = os.environ.get("CAMNODE_VM_MIRROR") or apt_mirror()
PACKAGES = ("systemd", "systemd-sysv", "udev", "kmod", "python3", "python3-venv", "iproute2", "procps")
MODULE_GLOBS = ("kernel/drivers/net/virtio_net.ko*", "kernel/drivers/net/net_failover.ko*",
                "kernel/net/core/failover.ko*", "kernel/fs/fat/*", "kernel/fs/nls/nls_cp437.ko*",
                "kernel/fs/nls/nls_ascii.ko*", "kernel/fs/nls/nls_utf8.ko*",
                "kernel/drivers/block/virtio_blk.ko*",
                "kernel/drivers/virtio/*", "kernel/drivers/char/hw_random/virtio-rng.ko*",
                # a 4G-like link shaped inside the guest: netem both ways (ingress through an ifb)
                "kernel/net/sched/sch_netem.ko*", "kernel/net/sched/sch_tbf.ko*",
                "kernel/net/sched/sch_ingress.ko*", "kernel/net/sched/cls_matchall.ko*",
                "kernel/net/sched/act_mirred.ko*", "kernel/drivers/net/ifb.ko*")
#: the arm64 guest's control shell is on a virtio console (the virt machine has one serial port)
ARM64_MODULE_GLOBS = ("kernel/drivers/char/virtio_console.ko*",)
BOOT_MB, ROOT_MB = 256, 1536
SECTOR = 512
BOOT_START = 2048  # sectors (1 MiB), as Raspberry Pi OS
#: kernel command line of the card (the Pi's bootloader reads it from cmdline.txt; the harness too)
CMDLINE = "console=ttyS0 root=/dev/vda2 rootfstype=ext4 rw fsck.repair=yes rootwait"



@dataclass(frozen=True)
class Arch:
    """A guest CPU: its name for ``camnode-provision --arch`` and its serial ports."""

    name: str
    console: str  # the kernel's console (read by the harness from a file)
    control: str  # the control shell's terminal


X86_64 = Arch("x86_64", "ttyS0", "ttyS1")
AARCH64 = Arch("aarch64", "ttyAMA0", "hvc0")
ARCHES = {a.name: a for a in (X86_64, AARCH64)}


def kernel_cmdline(arch: Arch = X86_64) -> str:
    return CMDLINE.replace("console=ttyS0", f"console={arch.console}")


FSTAB = """/dev/vda2 / ext4 defaults,noatime 0 1
/dev/vda1 /boot/firmware vfat defaults 0 2
"""
NETWORK = """[Match]
Name=en* eth*

[Network]
DHCP=ipv4
"""


def cache_dir() -> Path:
    d = Path(os.environ.get("CAMNODE_VM_CACHE") or Path.home() / ".cache" / "camnode-vm")
    d.mkdir(parents=True, exist_ok=True)
    return d


def kernel(arch: Arch = X86_64) -> tuple[Path, Path, str]:
    """The host's Debian cloud kernel, its initrd and version (package linux-image-cloud-amd64);
    for arm64, Debian's arm64 cloud kernel and a small initramfs (:mod:`tests.system.vmarm64`)."""
    if arch is AARCH64:
        return vmarm64.kernel(cache_dir())
    found = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))
    if not found:
        raise RuntimeError("no /boot/vmlinuz-*-cloud-amd64: apt-get install linux-image-cloud-amd64")
    vmlinuz = Path(found[-1])
    version = vmlinuz.name.removeprefix("vmlinuz-")
    return vmlinuz, Path(f"/boot/initrd.img-{version}"), version


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


#: bump when :func:`_rootfs` changes in a way the values hashed below do not show
TREE_STEPS = 1


def tree_key(arch: Arch = X86_64) -> str:
    """Hash of what goes into the debootstrap tree (a change to any of it rebuilds the tree)."""
    if arch is AARCH64:
        return _key(SUITE, MIRROR, PACKAGES, MODULE_GLOBS + ARM64_MODULE_GLOBS, vmarm64.kernel_version(),
                    FSTAB, NETWORK, TREE_STEPS, arch, vmarm64.STAGE2)
    return _key(SUITE, MIRROR, PACKAGES, MODULE_GLOBS, kernel()[2], FSTAB, NETWORK, TREE_STEPS)


def image_key(arch: Arch = X86_64) -> str:
    """Hash of the tree, of the test-only additions and of the card's layout."""
    parts = (tree_key(arch), BOOT_MB, ROOT_MB, BOOT_START, CMDLINE, CONTROL_SHELL, inspect.getsource(_disk),
             inspect.getsource(_mbr), inspect.getsource(_customize))
    if arch is AARCH64:  # the arm64 image's initramfs is part of its boot (built here)
        parts += (arch, vmarm64.INIT, vmarm64.INITRAMFS_MODULES)
    return _key(*parts)


def _run(*cmd: str, **kw) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout)[-2000:]}")


def _rootfs(tree: Path, version: str, arch: Arch = X86_64) -> None:
    tmp = tree.with_name(tree.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    foreign = arch is not X86_64
    if foreign:  # debootstrap's arm64 half runs in an arm64 VM (slow: its result is cached alone)
        _run("cp", "-a", str(vmarm64.base_tree(cache_dir(), SUITE, MIRROR, PACKAGES)), str(tmp))
    else:
        if not MIRROR:
            raise RuntimeError(f"no Debian mirror for {SUITE} in apt's sources: set CAMNODE_VM_MIRROR")
        _run("debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR,
             timeout=3600)
    (tmp / "etc/fstab").write_text(FSTAB)
    (tmp / "etc/hostname").write_text("camnode-vm\n")
    (tmp / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 camnode-vm\n")
    (tmp / "boot/firmware").mkdir(parents=True, exist_ok=True)
    (tmp / "etc/systemd/network/20-wired.network").write_text(NETWORK)
    wants = tmp / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
    (tmp / "etc/systemd/system/sockets.target.wants").mkdir(parents=True, exist_ok=True)
    (tmp / "etc/systemd/system/sockets.target.wants/systemd-networkd.socket").symlink_to(
        "/lib/systemd/system/systemd-networkd.socket")
    # the host's cloud kernel boots the guest: its modules for the network card and the FAT partition
    src = vmarm64.modules(cache_dir(), version) if foreign else Path("/lib/modules") / version
    for pattern in MODULE_GLOBS + (ARM64_MODULE_GLOBS if foreign else ()):
        for f in src.glob(pattern):
            dst = tmp / "lib/modules" / version / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst)
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src / f).exists():
            shutil.copy2(src / f, tmp / "lib/modules" / version / f)
    _run("depmod", "-b", str(tmp), version)
    # no root password prompt on the serial console; the machine-id is made at first boot
    (tmp / "etc/machine-id").write_text("")
    shutil.rmtree(tmp / "var/cache/apt/archives", ignore_errors=True)
    (tmp / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    tmp.rename(tree)


#: test instrumentation, not part of a node: a root shell on the second serial port, which the
#: harness drives through a socket (SIGSTOP the node, read the journal, remount read-only)
CONTROL_SHELL = """[Unit]
Description=system tests' control shell on ttyS1
After=systemd-user-sessions.service

[Service]
ExecStart=/bin/bash --noprofile --norc
StandardInput=tty
StandardOutput=tty
TTYPath=/dev/{tty}
TTYReset=yes
Environment=PS1= TERM=dumb
Restart=always
RestartSec=0

[Install]
WantedBy=multi-user.target
"""


def _customize(tree: Path, arch: Arch = X86_64) -> None:
    """The test-only additions (idempotent: they go into the cached tree before each image)."""
    unit = tree / "etc/systemd/system/testctl.service"
    unit.write_text(CONTROL_SHELL.format(tty=arch.control))
    link = tree / "etc/systemd/system/multi-user.target.wants/testctl.service"
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/systemd/system/testctl.service")
    # no getty waiting on the console (the harness only reads it) nor on the control shell's
    # terminal (systemd starts one on a virtio console by itself)
    for tty in (arch.console, arch.control):
        (tree / f"etc/systemd/system/serial-getty@{tty}.service").unlink(missing_ok=True)
        (tree / f"etc/systemd/system/serial-getty@{tty}.service").symlink_to("/dev/null")


def _mbr(path: Path, parts: list[tuple[int, int, int]]) -> None:
    """Write a DOS partition table of (type, first sector, sectors) entries."""
    mbr = bytearray(SECTOR)
    struct.pack_into("<I", mbr, 440, 0x6361_6D6E)  # disk id
    for i, (ptype, start, count) in enumerate(parts):
        e = 446 + 16 * i
        mbr[e:e + 16] = struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff", start, count)
    mbr[510:512] = b"\x55\xaa"
    with path.open("r+b") as fh:
        fh.write(mbr)


def _place(disk: Path, part: Path, start: int) -> None:
    with disk.open("r+b") as out, part.open("rb") as src:
        out.seek(start * SECTOR)
        shutil.copyfileobj(src, out, 4 << 20)


def _disk(tree: Path, out: Path, arch: Arch = X86_64) -> None:
    boot_sectors = BOOT_MB * 2048
    root_start = BOOT_START + boot_sectors
    root_sectors = ROOT_MB * 2048
    tmp = out.with_name(out.name + ".tmp")
    work = out.parent / "parts"
    work.mkdir(exist_ok=True)
    boot, root = work / "boot.vfat", work / "root.ext4"
    for p in (boot, root, tmp):
        p.unlink(missing_ok=True)
    _customize(tree, arch)
    _run("mkfs.vfat", "-F", "32", "-n", "bootfs", "-C", str(boot), str(BOOT_MB * 1024))
    cmdline = work / "cmdline.txt"
    cmdline.write_text(kernel_cmdline(arch) + "\n")
    _run("mcopy", "-i", str(boot), str(cmdline), "::/cmdline.txt",
         env={"MTOOLS_SKIP_CHECK": "1", "PATH": os.environ["PATH"]})
    _run("mkfs.ext4", "-q", "-L", "rootfs", "-d", str(tree), str(root), f"{ROOT_MB}M")
    with tmp.open("wb") as fh:
        fh.truncate((root_start + root_sectors) * SECTOR)
    _mbr(tmp, [(0x0C, BOOT_START, boot_sectors), (0x83, root_start, root_sectors)])
    _place(tmp, boot, BOOT_START)
    _place(tmp, root, root_start)
    shutil.rmtree(work)
    tmp.rename(out)


def base_image(arch: Arch = X86_64) -> Path:
    """The cached card image (built when missing; one builder at a time per machine)."""
    d = cache_dir() / tree_key(arch)
    d.mkdir(exist_ok=True)
    img = d / f"card-{image_key(arch)}.img"
    with (d / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not img.exists():
            tree = d / "rootfs"
            if not tree.is_dir():
                _rootfs(tree, kernel(arch)[2], arch)
            _disk(tree, img, arch)
    return img


if __name__ == "__main__":
    import sys
    import time

    t0 = time.monotonic()
    img = base_image(ARCHES[sys.argv[1] if len(sys.argv) > 1 else "x86_64"])
    print(img, f"{time.monotonic() - t0:.0f} s")
