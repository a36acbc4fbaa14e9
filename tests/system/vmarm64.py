"""What an arm64 guest needs that the x86_64 one takes from the host: a kernel, an initramfs, and
the second half of debootstrap, which runs arm64 programs.

- The kernel is Debian's arm64 cloud kernel (package ``linux-image-<version>-cloud-arm64``),
  fetched with ``apt-get download`` (the host needs ``dpkg --add-architecture arm64`` and
  ``apt-get update``: ``make test-system-arm64`` does both) and unpacked into the cache.
- Its virtio drivers are modules and no initramfs comes with the package (the host's
  initramfs-tools makes one only for a kernel it installs), so :func:`initramfs` makes a small
  one: Debian's static arm64 busybox, the virtio block driver's modules and a script that mounts
  ``root=`` and starts ``init=``.
- ``debootstrap --foreign`` only unpacks on an x86 host; :func:`second_stage` boots the tree in
  qemu-system-aarch64 (software emulation) with ``init=`` a script that runs
  ``debootstrap --second-stage`` and writes the finished tree as a tar stream to a second disk,
  which the host unpacks. No binfmt_misc or qemu-user registration on the host is needed.

The finished debootstrap tree is cached on its own (:func:`base_tree`, keyed by what debootstrap
is given), so a change to the card's other inputs (say, a kernel module more) costs a copy.

Cost: the download once (~22 MB); debootstrap ~20 min once per machine (see docs/installer.md).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

QEMU = "qemu-system-aarch64"
#: a Raspberry Pi 4's CPU: wheels that run here run on a Pi 4 (no pointer authentication either,
#: which qemu emulates slowly)
MACHINE = ("-M", "virt", "-cpu", "cortex-a72", "-accel", "tcg")
#: load order of the initramfs's modules (each after those it depends on)
INITRAMFS_MODULES = ("kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                     "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
                     "kernel/drivers/virtio/virtio_pci_modern_dev.ko", "kernel/drivers/virtio/virtio_pci.ko",
                     "kernel/drivers/block/virtio_blk.ko")

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m"; done
root=""
init=/sbin/init
for a in $(cat /proc/cmdline); do
  case "$a" in root=*) root="${a#root=}" ;; init=*) init="${a#init=}" ;; esac
done
i=0
while [ ! -b "$root" ]; do
  i=$((i + 1))
  [ "$i" -lt 600 ] || { echo "initramfs: no root device $root"; poweroff -f; }
  sleep 0.1
done
mkdir -p /newroot
mount -t ext4 -o rw "$root" /newroot || { echo "initramfs: cannot mount $root"; poweroff -f; }
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot "$init"
"""

#: init= of the second-stage boot (its result is the tar stream on /dev/vdb, then power off)
STAGE2 = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
/debootstrap/debootstrap --second-stage && status=ok || status=failed
rm -f /camnode-stage2
echo "camnode-stage2: debootstrap $status"
if [ "$status" = ok ]; then
  umount /proc
  tar --numeric-owner --one-file-system -cf /dev/vdb -C / . && echo "camnode-stage2: tar written"
fi
sync
echo o > /proc/sysrq-trigger 2>/dev/null || { mount -t proc proc /proc; echo o > /proc/sysrq-trigger; }
sleep 60
"""


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout)[-2000:]}")
    return r


@functools.cache
def kernel_version() -> str:
    """The version apt would install for linux-image-cloud-arm64 (e.g. ``6.1.0-57-cloud-arm64``);
    asked once per run."""
    r = subprocess.run(["apt-cache", "depends", "linux-image-cloud-arm64:arm64"], capture_output=True,
                       text=True)
    m = re.search(r"linux-image-(\S+-cloud-arm64):arm64", r.stdout)
    if r.returncode != 0 or m is None:
        raise RuntimeError("apt knows no linux-image-cloud-arm64:arm64: run `dpkg --add-architecture arm64"
                           " && apt-get update` (make test-system-arm64 does it)")
    return m.group(1)


def _unpacked(cache: Path, version: str) -> Path:
    """The kernel package and Debian's static busybox, unpacked into ``cache/kernel-<version>``."""
    d = cache / f"kernel-{version}"
    if (d / "root" / "boot" / f"vmlinuz-{version}").is_file() and (d / "root" / "bin" / "busybox").is_file():
        return d
    shutil.rmtree(d, ignore_errors=True)
    debs = d / "debs"
    debs.mkdir(parents=True)
    _run("apt-get", "download", f"linux-image-{version}:arm64", "busybox-static:arm64", cwd=debs, timeout=900)
    tmp = d / "root.tmp"
    for deb in sorted(debs.glob("*.deb")):
        _run("dpkg-deb", "-x", str(deb), str(tmp))
    shutil.rmtree(debs)
    tmp.rename(d / "root")
    return d


def initramfs(cache: Path, version: str) -> Path:
    d = _unpacked(cache, version)
    out = d / "initrd.cpio"
    if out.exists():
        return out
    staging = d / "initramfs"
    shutil.rmtree(staging, ignore_errors=True)
    for sub in ("bin", "dev", "proc", "sys", "modules", "newroot"):
        (staging / sub).mkdir(parents=True)
    shutil.copy2(d / "root" / "bin" / "busybox", staging / "bin" / "busybox")
    mods = d / "root" / "lib" / "modules" / version
    for i, rel in enumerate(INITRAMFS_MODULES):
        shutil.copy2(mods / rel, staging / "modules" / f"{i:02d}-{Path(rel).name}")
    (staging / "init").write_text(INIT)
    (staging / "init").chmod(0o755)
    names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as fh:
        r = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
                           input="\n".join(names).encode(), cwd=staging, stdout=fh, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(f"cpio failed: {r.stderr.decode(errors='replace')}")
    shutil.rmtree(staging)
    tmp.rename(out)
    return out


def kernel(cache: Path) -> tuple[Path, Path, str]:
    """(vmlinuz, initramfs, version) of the arm64 guest."""
    version = kernel_version()
    d = _unpacked(cache, version)
    return d / "root" / "boot" / f"vmlinuz-{version}", initramfs(cache, version), version


def modules(cache: Path, version: str) -> Path:
    """The kernel's ``/lib/modules/<version>`` (for the tree's own copy)."""
    return _unpacked(cache, version) / "root" / "lib" / "modules" / version


def qemu() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise RuntimeError(f"{QEMU} not found: install the Debian package qemu-system-arm")
    return path


def base_tree(cache: Path, suite: str, mirror: str, packages: tuple[str, ...], *, variant: str = "minbase"
              ) -> Path:
    """Debian's arm64 tree of ``packages``, both debootstrap stages done (built when missing)."""
    key = hashlib.sha256(repr((suite, mirror, packages, variant, STAGE2, INIT, INITRAMFS_MODULES)).encode())
    d = cache / f"arm64-debootstrap-{key.hexdigest()[:16]}"
    d.mkdir(exist_ok=True)
    tree = d / "tree"
    with (d / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tree.is_dir():
            tmp = d / "tree.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            _run("debootstrap", f"--variant={variant}", f"--include={','.join(packages)}", "--arch=arm64",
                 "--foreign", suite, str(tmp), mirror, timeout=3600)
            took = second_stage(tmp, cache)
            (d / "second-stage.seconds").write_text(f"{took:.0f}\n")
            tmp.rename(tree)
    return tree


def second_stage(tree: Path, cache: Path, *, timeout: float = 7200) -> float:
    """Finish a ``debootstrap --foreign`` tree by booting it; returns the seconds the guest took."""
    vmlinuz, initrd, _ = kernel(cache)
    work = tree.with_name(tree.name + ".stage2")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (tree / "camnode-stage2").write_text(STAGE2)
    (tree / "camnode-stage2").chmod(0o755)
    disk, out, console = work / "stage.ext4", work / "tree.tar", work / "console.log"
    _run("mkfs.ext4", "-q", "-d", str(tree), str(disk), "3G")
    with out.open("wb") as fh:
        fh.truncate(3 << 30)
    cmd = [qemu(), *MACHINE, "-m", "1024", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
           "-kernel", str(vmlinuz), "-initrd", str(initrd),
           "-append", "console=ttyAMA0 root=/dev/vda rw init=/camnode-stage2 panic=-1",
           "-drive", f"file={disk},format=raw,if=virtio,cache=unsafe",
           "-drive", f"file={out},format=raw,if=virtio,cache=unsafe",
           "-device", "virtio-rng-pci", "-serial", f"file:{console}"]
    t0 = time.monotonic()
    try:
        subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the arm64 second stage did not finish in {timeout:.0f} s: see {console}") \
            from None
    took = time.monotonic() - t0
    log = console.read_text(errors="replace") if console.exists() else ""
    if "camnode-stage2: tar written" not in log:
        raise RuntimeError(f"the arm64 second stage failed (console {console}):\n"
                           + "\n".join(log.splitlines()[-40:]))
    shutil.rmtree(tree)
    tree.mkdir()
    with tarfile.open(out) as tar:  # stops at the archive's end; the disk's zeros after it are ignored
        tar.extractall(tree, numeric_owner=True, filter="fully_trusted")
    os.sync()
    shutil.rmtree(work)
    return took
