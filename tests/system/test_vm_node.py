"""The whole node in a virtual machine: first boot from the installer's card, systemd's readiness
and watchdog for real, and power cuts that lose the guest's page cache.

The node is this module's copy of the card after first boot (``conftest.py``), booted once.
The figures each test measures go to the run's summary (``figure``) and are quoted in the issue note.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from node.record.segment import to_us
from station.live.credentials import node_password
from tests.record_crash import Campaign, check_store
from tests.system.nodevm import NODE_ID, RELAY, fat_listing
from tests.system.vm import cmdline_of
from tests.system.vmimage import BOOT_MB, BOOT_START, SECTOR

STORE = "/var/lib/camnode/recordings"
CUTS = int(os.environ.get("CAMNODE_VM_CUTS", "5"))


def _sh(node, command: str, timeout: float = 120) -> str:
    code, out = node.vm.sh(command, timeout)
    assert code == 0, f"{command!r} exited {code}: {out}"
    return out


def _prop(node, name: str) -> str:
    return _sh(node, f"systemctl show camnode -p {name} --value")


def test_first_boot_installs_the_node_and_it_heartbeats_at_the_station(node):
    _, hb = node.station.wait("heartbeat", timeout=60)
    assert hb["node_id"] == NODE_ID
    # the boot partition: secrets and the wheels gone, the first-boot hook out of cmdline.txt
    assert "camnode" not in fat_listing(node.card).lower()
    assert "firstboot" not in cmdline_of(node.card)
    assert "cmdline.txt" in fat_listing(node.card)
    assert _sh(node, "ls -A /boot/firmware") == "cmdline.txt"
    # installed as the unit and the first-boot script say
    assert _sh(node, "systemctl is-enabled camnode") == "enabled"
    assert _prop(node, "Type") == "notify"
    assert _prop(node, "ActiveState") == "active"
    assert _sh(node, "stat -c '%a %U' /etc/camnode/mqtt.password /etc/camnode/signing.key "
               "/etc/camnode/live.password").split("\n") == ["600 camnode"] * 3
    # the stream password is the one derived for this node, not the station's secret
    secret = (node.ward.parent / "station" / "live-secret").read_text().strip().encode()
    assert _sh(node, "cat /etc/camnode/live.password") == node_password(secret, NODE_ID)
    assert f'relay = "{RELAY}"' in _sh(node, "cat /etc/camnode/node.toml")
    pid = _prop(node, "MainPID")
    assert _sh(node, f"ps -o user= -p {pid}") == "camnode"
    # the node that heartbeats is the one first boot installed from the card's wheels
    assert "/opt/camnode/.venv/bin/camnode" in _sh(node, f"tr '\\0' ' ' < /proc/{pid}/cmdline")


def test_watchdog_restarts_a_hung_node_and_the_station_sees_it_return(node, figure):
    watchdog_s = int(re.fullmatch(r"(\d+)s", _prop(node, "WatchdogUSec")).group(1))
    restart_s = int(re.fullmatch(r"(\d+)s", _prop(node, "RestartUSec")).group(1))
    pid = _prop(node, "MainPID")
    restarts = int(_prop(node, "NRestarts"))
    node.station.wait("heartbeat", timeout=60)
    _sh(node, f"kill -STOP {pid}")
    t_stop = time.monotonic()
    # the hung node sends nothing; systemd kills it after WatchdogSec, restarts it, it heartbeats
    deadline = t_stop + 600
    while True:
        t, hb = node.station.wait("heartbeat", after=t_stop, timeout=max(1.0, deadline - time.monotonic()))
        if hb.get("uptime_s", 1e9) < t - t_stop:
            break  # from the new process (an old one in flight does not count)
    back_s = t - t_stop
    new_pid = _prop(node, "MainPID")
    assert new_pid != pid and int(_prop(node, "NRestarts")) == restarts + 1
    journal = _sh(node, "journalctl -u camnode -o cat --no-pager | tail -n 60")
    assert "Watchdog timeout" in journal, journal
    # the GPIO safe-state hook (ExecStopPost) ran after the kill and succeeded
    after = journal[journal.rindex("Watchdog timeout"):]
    assert "GPIO safe state: IR off" in after and "safe state failed" not in after, after
    started = int(_prop(node, "ActiveEnterTimestampMonotonic")) - \
        int(_prop(node, "ExecMainStartTimestampMonotonic"))
    figure(f"watchdog: hung node back at the station after {back_s:.1f} s "
          f"(WatchdogSec {watchdog_s} s + RestartSec {restart_s} s + start to READY {started / 1e6:.1f} s)")
    assert back_s >= watchdog_s  # killed by the watchdog, not by anything sooner
    assert back_s <= watchdog_s + restart_s + started / 1e6 + 2 * 2.0 + 15  # + heartbeat period, slack


def _rdump(card: Path, dest: Path) -> Path:
    """The store as the next boot will find it, read without mounting: the root partition copied
    out of the card, its journal replayed (what the kernel does when it mounts it; debugfs alone
    would show the metadata as it was before the journal's last commits), then ``debugfs rdump``.
    The card itself is left as the cut left it, for the guest's own recovery."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    part = dest / "root.ext4"
    start = (BOOT_START + BOOT_MB * 2048) * SECTOR
    subprocess.run(["dd", f"if={card}", f"of={part}", "bs=4M", f"skip={start}", "iflag=skip_bytes",
                    "conv=sparse", "status=none"], check=True)
    r = subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(part)], capture_output=True, text=True)
    assert r.returncode in (0, 1), f"e2fsck: {r.returncode} {r.stdout} {r.stderr}"
    r = subprocess.run(["debugfs", "-R", f"rdump {STORE} {dest}", str(part)], capture_output=True, text=True)
    assert r.returncode == 0 and (dest / "recordings").is_dir(), r.stderr
    part.unlink()
    return dest / "recordings"


def _recording(node, timeout: float = 900) -> None:
    """Wait for a heartbeat that shows the encoder producing frames (after a boot, READY and the
    first heartbeat come before the camera and encoder have warmed up under emulation)."""
    deadline = time.monotonic() + timeout
    after = time.monotonic()
    while True:
        t, hb = node.station.wait("heartbeat", after=after, timeout=max(1.0, deadline - time.monotonic()))
        if (hb.get("fps_out") or 0) > 0:
            return
        after = t


def _side_databases(store: Path) -> list[str]:
    """The node's outbox and open-events databases live beside the segments: each must pass
    SQLite's integrity check after the cut; then they are set aside for the segment check."""
    problems = []
    for name in ("outbox.sqlite", "events-open.sqlite"):
        db = store / name
        if db.exists():
            with sqlite3.connect(db) as con:
                verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                problems.append(f"{name}: {verdict}")
        for f in store.glob(name + "*"):
            f.unlink()
    return problems


def test_power_cuts_while_recording(node, tmp_path, figure):
    rng = random.Random(15)
    camp = Campaign()
    decoded: set[str] = set()
    if os.environ.get("CAMNODE_VM_SYNC_FRAGMENTS") == "1":  # the fdatasync-per-fragment comparison
        _sh(node, "sed -i 's/^\\[record\\]$/[record]\\nsync_fragments = true/' /etc/camnode/node.toml"
            " && systemctl restart camnode", timeout=600)
    for _ in range(CUTS):
        # recording for a while (15-40 s once frames flow), then the power goes
        _recording(node)
        time.sleep(rng.uniform(15.0, 40.0))
        cut_us = to_us(datetime.now(UTC))
        node.vm.kill()
        camp.kills += 1
        store = _rdump(node.card, tmp_path / "cut")
        camp.problems += _side_databases(store)
        check_store(store, decoded, camp, cut_us)
        assert not camp.problems, camp.problems
        node.vm.start()
    node.station.wait("heartbeat", after=time.monotonic(), timeout=900)
    node.vm.wait_ready(300)
    losses = sorted(camp.losses_s)
    figure(f"{CUTS} power cuts: {camp.segments} segments, {camp.recovered} recovered, "
          f"{camp.removed_parts} .part removed; footage lost per cut (cut time - end of the last "
          f"segment on the card) median {losses[len(losses) // 2]:.1f} s, max {losses[-1]:.1f} s; "
          f"all: {[round(x, 1) for x in camp.losses_s]}")
    assert camp.problems == []
    assert camp.segments > 0


def test_the_node_reports_its_unit_ready_only_when_it_runs(node):
    # Type=notify: systemd recorded READY (ActiveEnter) after the process started, with a gap that
    # is the node's own start-up, and the status line the node sent with it
    started = int(_prop(node, "ExecMainStartTimestampMonotonic"))
    active = int(_prop(node, "ActiveEnterTimestampMonotonic"))
    assert active > started
    assert re.search(r"\S", _prop(node, "StatusText"))
