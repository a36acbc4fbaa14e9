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
import tempfile
from pathlib import Path

from provisioning.broker import ProvisionError

FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
NODE_FILES = ("node.toml", "mqtt.password", "signing.key", "signing.pub", "99-camnode.conf",
              "camnode.service")

FIRSTBOOT = """#!/bin/sh
# camnode first boot (run once by systemd.run= from cmdline.txt, or by hand as root):
# install camnode, create its user, move the provisioned files off the world-readable boot
# partition, enable the service, and remove the hook from cmdline.txt.
set -eu
BOOT=$(ls -d /boot/firmware/camnode /boot/camnode 2>/dev/null | head -n 1)
[ -n "$BOOT" ] || exit 0
CMDLINE=$(dirname "$BOOT")/cmdline.txt
id camnode >/dev/null 2>&1 || useradd --system --home-dir /var/lib/camnode --shell /usr/sbin/nologin camnode
for g in video gpio i2c; do getent group "$g" >/dev/null && usermod -aG "$g" camnode; done
if [ -d "$BOOT/wheels" ]; then
  # --system-site-packages: picamera2 and libcamera come from the OS (python3-picamera2)
  [ -x /opt/camnode/.venv/bin/pip ] || python3 -m venv --system-site-packages /opt/camnode/.venv
  /opt/camnode/.venv/bin/pip install --no-index --find-links "$BOOT/wheels" "camnode[detect]"
fi
install -d -m 0750 -o root -g camnode /etc/camnode
install -m 0640 -o root -g camnode "$BOOT/node.toml" /etc/camnode/node.toml
install -m 0600 -o camnode -g camnode "$BOOT/mqtt.password" "$BOOT/signing.key" /etc/camnode/
install -m 0644 "$BOOT/signing.pub" /etc/camnode/signing.pub
[ ! -f "$BOOT/ca.crt" ] || install -m 0644 "$BOOT/ca.crt" /etc/camnode/ca.crt
install -m 0644 "$BOOT/99-camnode.conf" /etc/sysctl.d/99-camnode.conf
install -m 0644 "$BOOT/camnode.service" /etc/systemd/system/camnode.service
systemctl enable camnode.service
rm -rf "$BOOT"
[ ! -f "$CMDLINE" ] || sed -i -e 's| systemd.run=[^ ]*camnode/firstboot.sh||' \\
  -e 's| systemd.run_success_action=reboot||' -e 's| systemd.unit=kernel-command-line.target||' "$CMDLINE"
sync
"""

#: appended to the kernel command line so that the first boot runs the script, then reboots
#: (the mechanism Raspberry Pi Imager uses for its own first-run script)
CMDLINE_HOOK = (" systemd.run=/boot/firmware/camnode/firstboot.sh systemd.run_success_action=reboot"
                " systemd.unit=kernel-command-line.target")


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
    try:
        return subprocess.run([tool, *args[1:]], capture_output=True, timeout=120,
                              env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"{args[0]} did not finish in 120 s (a slow or failing card?)") from None


def _refuse_mounted(image: Path, mounts: Path = Path("/proc/mounts")) -> None:
    """Writing under a mounted FAT corrupts it: a desktop often auto-mounts a fresh card."""
    if not str(image).startswith("/dev/"):
        return
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return
    dev = str(image.resolve())
    for line in lines:
        src, _, target = line.partition(" ")
        if src.startswith(dev):
            raise ProvisionError(f"{src} is mounted on {target.split(' ')[0]}: unmount it first")


def write_node_files(image: Path, node_dir: Path, *, wheels: Path | None = None) -> tuple[list[str], bool]:
    """Copy the node's files, ``firstboot.sh`` and optional wheels into ``::/camnode/`` and hook
    the script into ``cmdline.txt`` when the image has one. Returns (names, hooked)."""
    missing = [n for n in NODE_FILES if not (node_dir / n).is_file()]
    if missing:
        raise ProvisionError(f"{node_dir}: missing {', '.join(missing)} (run camnode-provision node)")
    _refuse_mounted(image)
    target = f"{image}@@{fat_offset(image)}"
    _mtools("mmd", "-i", target, "::/camnode")  # fails harmlessly when it exists
    (node_dir / "firstboot.sh").write_text(FIRSTBOOT)
    names = [*NODE_FILES, "firstboot.sh"] + (["ca.crt"] if (node_dir / "ca.crt").is_file() else [])
    copies = [(node_dir / n, f"::/camnode/{n}") for n in names]
    if wheels is not None:
        found = sorted(wheels.glob("*.whl"))
        if not found:
            raise ProvisionError(f"--wheels {wheels}: no .whl files")
        _mtools("mmd", "-i", target, "::/camnode/wheels")
        copies += [(w, f"::/camnode/wheels/{w.name}") for w in found]
        names += [f"wheels/{w.name}" for w in found]
    for src, dst in copies:
        r = _mtools("mcopy", "-o", "-i", target, str(src), dst)
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            raise ProvisionError(f"mcopy {src.name} into {image}: {err}")
    return names, _hook_cmdline(target)


def _hook_cmdline(target: str) -> bool:
    """Append :data:`CMDLINE_HOOK` to ``cmdline.txt`` (once); False when there is none."""
    r = _mtools("mtype", "-i", target, "::/cmdline.txt")
    if r.returncode != 0:
        return False
    line = r.stdout.decode(errors="replace").strip()
    if "camnode/firstboot.sh" not in line:
        line += CMDLINE_HOOK
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write(line + "\n")
        try:
            w = _mtools("mcopy", "-o", "-i", target, fh.name, "::/cmdline.txt")
            if w.returncode != 0:
                err = w.stderr.decode(errors="replace").strip()
                raise ProvisionError(f"cannot update cmdline.txt: {err}")
        finally:
            Path(fh.name).unlink()
    return True
