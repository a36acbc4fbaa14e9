"""Write a provisioned node's files into the FAT boot partition of an SD card image.

The installer flashes the board's OS image, then, without mounting anything (no root, works
on any machine with mtools), copies the node's directory into ``/camnode/`` on the boot
partition with :func:`write_node_files`. On first boot ``firstboot.sh`` (copied along) moves
the files to ``/etc/camnode`` with mode 0600, installs the sysctl file and the unit, and
deletes them from the boot partition, which every user can read.

Assumes an MBR-partitioned image (Raspberry Pi OS, Jetson SD images) or a bare FAT image.
Cost: one ``mcopy`` per file.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

from provisioning.broker import ProvisionError

FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
NODE_FILES = ("node.toml", "mqtt.password", "signing.key", "signing.pub", "99-camnode.conf",
              "camnode.service")

FIRSTBOOT = """#!/bin/sh
# camnode first boot: move the provisioned files off the (world-readable) boot partition.
set -eu
BOOT=$(ls -d /boot/firmware/camnode /boot/camnode 2>/dev/null | head -n 1)
[ -n "$BOOT" ] || exit 0
id camnode >/dev/null 2>&1 || useradd --system --home-dir /var/lib/camnode --shell /usr/sbin/nologin camnode
for g in video gpio i2c; do getent group "$g" >/dev/null && usermod -aG "$g" camnode; done
install -d -m 0750 -o root -g camnode /etc/camnode
install -m 0640 -o root -g camnode "$BOOT/node.toml" /etc/camnode/node.toml
install -m 0600 -o camnode -g camnode "$BOOT/mqtt.password" "$BOOT/signing.key" /etc/camnode/
install -m 0644 "$BOOT/signing.pub" /etc/camnode/signing.pub
install -m 0644 "$BOOT/99-camnode.conf" /etc/sysctl.d/99-camnode.conf
install -m 0644 "$BOOT/camnode.service" /etc/systemd/system/camnode.service
rm -rf "$BOOT"
sysctl --system >/dev/null || true
systemctl daemon-reload && systemctl enable --now camnode.service
"""


def fat_offset(image: Path) -> int:
    """Byte offset of the first FAT partition (0 for a bare FAT image)."""
    with image.open("rb") as fh:
        sector = fh.read(512)
    if len(sector) < 512:
        raise ProvisionError(f"{image}: too small to be a disk image")
    if sector[510:512] != b"\x55\xaa":
        raise ProvisionError(f"{image}: no boot signature (not a disk image)")
    if sector[54:59] == b"FAT12" or sector[54:59] == b"FAT16" or sector[82:87] == b"FAT32":
        return 0  # a bare file system, no partition table
    for i in range(4):
        entry = sector[446 + 16 * i: 446 + 16 * (i + 1)]
        ptype = entry[4]
        (lba,) = struct.unpack_from("<I", entry, 8)
        if ptype in FAT_TYPES and lba:
            return lba * 512
    raise ProvisionError(f"{image}: no FAT partition in the MBR (is this the board's OS image?)")


def _mtools(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which(args[0])
    if tool is None:
        raise ProvisionError(f"{args[0]} not found: install the Debian package 'mtools'")
    return subprocess.run([tool, *args[1:]], capture_output=True, text=True, timeout=60,
                          env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})


def write_node_files(image: Path, node_dir: Path) -> list[str]:
    """Copy the node's files and ``firstboot.sh`` into ``::/camnode/``; returns the names."""
    missing = [n for n in NODE_FILES if not (node_dir / n).is_file()]
    if missing:
        raise ProvisionError(f"{node_dir}: missing {', '.join(missing)} (run camnode-provision node)")
    target = f"{image}@@{fat_offset(image)}"
    _mtools("mmd", "-i", target, "::/camnode")  # fails harmlessly when it exists
    firstboot = node_dir / "firstboot.sh"
    firstboot.write_text(FIRSTBOOT)
    names = [*NODE_FILES, "firstboot.sh"]
    for name in names:
        r = _mtools("mcopy", "-o", "-i", target, str(node_dir / name), f"::/camnode/{name}")
        if r.returncode != 0:
            raise ProvisionError(f"mcopy {name} into {image}: {r.stderr.strip()}")
    return names
