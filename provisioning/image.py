"""Write a provisioned node's files into the FAT boot partition of an SD card image.

The installer flashes the board's OS image, then, without mounting anything (no root, works
on any machine with mtools), copies the node's directory into ``/camnode/`` on the boot
partition with :func:`write_node_files`. On first boot ``firstboot.sh`` (copied along) moves
the files to ``/etc/camnode`` (secrets — MQTT and live-view passwords, keys — mode 0600),
installs the sysctl file and the unit, and deletes them from the boot partition, which every
user can read.

Assumes an MBR-partitioned image (Raspberry Pi OS, Jetson SD images) or a bare FAT image.
Cost: one ``mcopy`` per file.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from provisioning.errors import Conflict, ProvisionError, ToolError
from provisioning.live import PASSWORD_FILE as LIVE_PASSWORD
from provisioning.node import CAMERA_PASSWORD
from provisioning.wheels import PYTHON, requirement
from provisioning.wheels import check as check_wheels

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
# --system-site-packages: picamera2 and libcamera come from the OS (python3-picamera2)
[ -x /opt/camnode/.venv/bin/pip ] || python3 -m venv --system-site-packages /opt/camnode/.venv
/opt/camnode/.venv/bin/pip install --no-index --find-links "$BOOT/wheels" "$(cat "$BOOT/requirement.txt")"
install -d -m 0750 -o root -g camnode /etc/camnode
install -m 0640 -o root -g camnode "$BOOT/node.toml" /etc/camnode/node.toml
if [ -d "$BOOT/models" ]; then
  install -d -m 0750 -o root -g camnode /etc/camnode/models
  install -m 0640 -o root -g camnode "$BOOT"/models/* /etc/camnode/models/
fi
install -m 0600 -o camnode -g camnode "$BOOT/mqtt.password" "$BOOT/signing.key" /etc/camnode/
install -m 0644 "$BOOT/signing.pub" /etc/camnode/signing.pub
[ ! -f "$BOOT/ca.crt" ] || install -m 0644 "$BOOT/ca.crt" /etc/camnode/ca.crt
[ ! -f "$BOOT/client.crt" ] || install -m 0644 "$BOOT/client.crt" /etc/camnode/client.crt
for f in client.key live.password camera.password; do  # the secrets a node may have besides
  [ ! -f "$BOOT/$f" ] || install -m 0600 -o camnode -g camnode "$BOOT/$f" /etc/camnode/
done
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
        raise ToolError(f"{args[0]} not found: install the Debian package 'mtools'")
    try:
        return subprocess.run([tool, *args[1:]], capture_output=True, timeout=120,
                              env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
    except subprocess.TimeoutExpired:
        raise ToolError(f"{args[0]} did not finish in 120 s (a slow or failing card?)") from None


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


def check_node_dir_complete(node_dir: Path) -> bool:
    """Refuse a node folder that would not start as a node; returns whether it detects."""
    from node.config import ConfigError
    from provisioning.node import examine_as_node

    if not node_dir.is_dir():
        raise ProvisionError(f"{node_dir}: no such node folder (made by camnode-provision node)")
    missing = [n for n in NODE_FILES if not (node_dir / n).is_file()]
    if missing:
        raise ProvisionError(f"{node_dir}: missing {', '.join(missing)} (run camnode-provision node)")
    _refuse_retired(node_dir)
    try:
        cfg = examine_as_node(node_dir)  # what the node's own start-up would refuse
    except ConfigError as exc:
        raise ProvisionError(str(exc)) from None
    if cfg.mqtt.tls_ca and not (node_dir / "ca.crt").is_file():
        raise ProvisionError(f"{node_dir}: node.toml uses TLS but ca.crt is missing")
    if cfg.mqtt.tls_cert and not all((node_dir / n).is_file() for n in ("client.crt", "client.key")):
        raise ProvisionError(f"{node_dir}: node.toml uses a client certificate but client.crt/client.key "
                             "are missing")
    if cfg.detect.enabled:
        for what in (cfg.detect.model, cfg.detect.labels):
            p = Path(what)
            if p.is_absolute() or not (node_dir / p).is_file():
                raise ProvisionError(f"{node_dir}: detection is on but {what} is not in the node's folder "
                                     "(provision it with --model/--labels, or --no-detect)")
    return bool(cfg.detect.enabled)


def _refuse_retired(node_dir: Path) -> None:
    """A node retired from its ward cannot log in: a card for it would never reach the post."""
    registry = node_dir.resolve().parent / "ward.json"
    if not registry.is_file():
        return
    try:
        user = json.loads(registry.read_text()).get("users", {}).get(node_dir.resolve().name)
    except (OSError, ValueError):
        return
    if isinstance(user, dict) and user.get("state") == "retired":
        raise Conflict(f"{node_dir.name} was retired from its ward on {user.get('retired')}: its login no "
                       "longer works; provision a new node id")


def write_node_files(image: Path, node_dir: Path, *, wheels: Path,
                     python: str = PYTHON, arch: str = "aarch64") -> tuple[list[str], bool]:
    """Check that the card would boot into a running node (node folder complete, wheels that
    install for the board), then copy the node's files, ``firstboot.sh``, models and wheels into
    ``::/camnode/`` and hook the script into ``cmdline.txt`` when the image has one.
    Returns (names, hooked)."""
    if not str(image).startswith("/dev/") and not image.is_file():
        raise ProvisionError(f"--image {image}: no such file (the board's OS image, or the card's device)")
    detect = check_node_dir_complete(node_dir)
    check_wheels(wheels, detect=detect, python=python, arch=arch)
    _refuse_mounted(image)
    target = f"{image}@@{fat_offset(image)}"
    (node_dir / "firstboot.sh").write_text(FIRSTBOOT)
    (node_dir / "requirement.txt").write_text(requirement(detect) + "\n")
    names = [*NODE_FILES, "firstboot.sh", "requirement.txt"] + \
        [n for n in ("ca.crt", "client.crt", "client.key", LIVE_PASSWORD, CAMERA_PASSWORD)
         if (node_dir / n).is_file()]
    names += [f"wheels/{w.name}" for w in sorted(wheels.glob("*.whl"))]
    if detect:
        names += [f"models/{m.name}" for m in sorted((node_dir / "models").glob("*"))]
    copies = [((wheels / n[7:]) if n.startswith("wheels/") else node_dir / n, f"::/camnode/{n}")
              for n in names]
    _check_room(target, image, [src for src, _ in copies])
    # nothing was written so far; a re-run replaces the previous files (no stale wheels)
    _mtools("mdeltree", "-i", target, "::/camnode")  # fails harmlessly when there is none
    for folder in ("::/camnode", "::/camnode/wheels", *(["::/camnode/models"] if detect else [])):
        _mtools("mmd", "-i", target, folder)
    for src, dst in copies:
        r = _mtools("mcopy", "-o", "-i", target, str(src), dst)
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            raise ToolError(f"mcopy {src.name} into {image}: {err}")
    return names, _hook_cmdline(target)


def _check_room(target: str, image: Path, files: list[Path]) -> None:
    """Refuse before writing when the boot partition cannot hold the files (a half-written
    card boots into nothing). Counts each file rounded up to 64 KiB (the largest FAT cluster)."""
    r = _mtools("mdir", "-i", target, "::/")
    m = re.search(r"([\d ]+) bytes free", r.stdout.decode(errors="replace"))
    if r.returncode != 0 or m is None:
        raise ToolError(f"cannot read the free space of {image}'s boot partition")
    free = int(m.group(1).replace(" ", ""))
    old = _mtools("mdir", "-/", "-i", target, "::/camnode")  # a previous run's files, replaced
    t = re.search(r"(\d+) files\s+([\d ]+) bytes", old.stdout.decode(errors="replace"))
    if old.returncode == 0 and t:
        free += int(t.group(2).replace(" ", ""))
    need = sum(-(-f.stat().st_size // 65536) * 65536 for f in files)
    if need > free:
        raise ProvisionError(f"{image}: the boot partition has {free / 1e6:.0f} MB free; the node's files "
                             f"and wheels need {need / 1e6:.0f} MB (use the board's standard image, or "
                             "enlarge its boot partition)")


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
