"""The node's card in trouble, inside the VM: full, then remounted read-only.

Full: a file as big as the space left (``fallocate`` as root: the node's user is refused every
byte, root keeps ext4's reserve) while the node records, with a legal hold on its oldest footage.
Read-only: the kernel's emergency remount (``sysrq u``), what a card mounted
``errors=remount-ro`` goes through when it fails, and the only read-only remount possible while
the node holds files open for writing (``mount -o remount,ro /`` is refused: busy). Each time the
node must keep running, say what is wrong in its heartbeat's ``faults``, leave closed footage
alone, and recover by itself when the card is writable again.

The figures (time to the fault, time to recovery) are printed (``-s``).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

from tests.system import nodeprobe as probe
from tests.system.nodevm import NODE_ID
from tests.system.powercut import STORE

FILL = "/var/tmp/camnode-fill"
#: short segments: a fault and a recovery show within seconds, not minutes; a one-day target
#: the VM's small card meets, so that a healthy node has no fault to begin with
TUNING = {"storage": {"segment_s": "10"}, "record": {"max_age_days": "1"}}
FULL_S = 40.0
READ_ONLY_S = 30.0


def _newer_segment(name: str | None):
    return lambda hb: bool(hb["recorder"].get("last_segment")) and \
        (name is None or hb["recorder"]["last_segment"] > name)


def _hold(node, start: str, end: str) -> dict:
    """A legal hold asked for by the station, as an operator would (``cmd/hold``)."""
    t0 = time.monotonic()
    node.station.c.publish(f"camnode/{NODE_ID}/cmd/hold", json.dumps(
        {"start": start, "end": end, "owner": "system test", "name": "case-1"}), qos=1)
    _, reply = node.station.wait("reply/hold", after=t0, timeout=60)
    assert reply.get("ok"), reply
    return reply["result"]


def _integrity(node) -> str:
    """SQLite's own check of the node's three databases, then ``camnode verify`` of the store."""
    out = probe.sh(node, f"cd {STORE} && for d in index.db outbox.sqlite events-open.sqlite; do "
                   "/opt/camnode/.venv/bin/python -c 'import sqlite3, sys; "
                   "print(sys.argv[1], sqlite3.connect(sys.argv[1]).execute(\"pragma integrity_check\")"
                   ".fetchone()[0])' $d; done")
    assert all(line.endswith(" ok") for line in out.splitlines()), out
    return probe.sh(node, f"/opt/camnode/.venv/bin/camnode verify --config {probe.CONFIG}", timeout=600)


def test_a_full_card_and_a_read_only_card(node, figure):
    probe.set_config(node, TUNING)
    probe.heartbeat(node, probe.recording, timeout=600, what="with frames encoded")
    # a few closed segments besides the one the hold will cover: what the node can free on the
    # full card for its writer without touching the hold
    _, hb = probe.heartbeat(node, lambda hb: _newer_segment(None)(hb) and hb["recorder"]["segments"] >= 5,
                            timeout=300, what="naming five closed segments")
    healthy = set(hb["faults"])
    assert not healthy & {"storage", "events", "retention"}, hb["faults"]
    pid = probe.main_pid(node)
    _full(node, pid, healthy, hb["recorder"]["oldest_utc"], figure)
    _read_only(node, pid, healthy, figure)
    figure(f"card: the store after both: {_integrity(node)}")


def _full(node, pid: int, healthy: set[str], oldest: str, say) -> None:
    start = datetime.fromisoformat(oldest.replace("Z", "+00:00"))
    held = _hold(node, start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 (start + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert held["segments"] >= 1, held
    before = probe.closed_segments(node)
    avail = int(probe.sh(node, "df --output=avail -B1 / | tail -1"))
    probe.sh(node, f"fallocate -l {avail} {FILL} && sync")
    t_full = time.monotonic()
    t, hb = probe.heartbeat(node, lambda hb: "retention" in hb["faults"] or "storage" in hb["faults"],
                            after=t_full, timeout=180, what="with a retention or storage fault")
    say(f"card: full: fault in the heartbeat {t - t_full:.1f} s after the fill, disk_free_mb "
          f"{hb['disk_free_mb']}: {hb['faults']}")
    time.sleep(max(0.0, FULL_S - (time.monotonic() - t_full)))
    beats = probe.heartbeats_between(node, t_full, time.monotonic())
    rec = beats[-1][1]["recorder"]
    say(f"card:   {len(beats)} heartbeats in {time.monotonic() - t_full:.0f} s on the full card; "
          f"segments kept {rec['segments']}, protected deleted {rec['protected_deleted']}, "
          f"disk-full events {rec['disk_full_events']}, last error {rec['last_error']}")
    assert probe.main_pid(node) == pid, "the node restarted on a full card"
    assert len(beats) >= FULL_S / 2.0 / 2, "heartbeats stopped on a full card"
    assert all(b["disk_free_mb"] < 5 for _, b in beats[-3:])
    assert all("retention" in b["faults"] for _, b in beats[-3:]), beats[-1][1]["faults"]
    after = probe.closed_segments(node)
    # the held footage stays: the floor alone never costs protected footage, and the unprotected
    # footage the node deleted left its writer room (protected goes only when it leaves none)
    assert rec["protected_deleted"] == [], beats[-1][1]["faults"]
    assert min(before) in after, "the held segment was deleted on a card something else filled"
    changed = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
    assert not changed, f"closed segments altered on a full card: {changed}"
    say(f"card:   closed segments: {len(before)} before, {len(before.keys() & after.keys())} of them "
          f"left (unchanged), {len(after.keys() - before.keys())} new")
    events = probe.events_between(node, t_full, time.monotonic())
    assert events, "no event message reached the station from the full card"
    say(f"card:   {len(events)} event messages reached the station from the full card")
    probe.sh(node, f"rm -f {FILL}")
    t_free = time.monotonic()
    t, hb = probe.heartbeat(node, lambda hb: set(hb["faults"]) <= healthy and
                            _newer_segment(rec["last_segment"])(hb), after=t_free, timeout=180,
                            what="back to health with a new segment")
    say(f"card:   space back: the faults cleared and a new segment closed {t - t_free:.1f} s later")
    assert probe.main_pid(node) == pid


def _read_only(node, pid: int, healthy: set[str], say) -> None:
    code, out = node.vm.sh("mount -o remount,ro /")
    assert code != 0 and "busy" in out, out  # files open for writing: the polite way is refused
    probe.sh(node, "echo u > /proc/sysrq-trigger")  # the kernel's way: forced
    t_ro = time.monotonic()
    assert "ro" in probe.sh(node, "findmnt -no OPTIONS /").split(",")
    t, hb = probe.heartbeat(node, lambda hb: "read-only" in json.dumps(hb["faults"]).lower(), after=t_ro,
                            timeout=180, what="saying read-only")
    say(f"card: read-only (emergency remount): fault in the heartbeat {t - t_ro:.1f} s later: "
          f"{hb['faults']}")
    time.sleep(max(0.0, READ_ONLY_S - (time.monotonic() - t_ro)))
    beats = probe.heartbeats_between(node, t_ro, time.monotonic())
    assert len(beats) >= READ_ONLY_S / 2.0 / 2, f"heartbeats stopped on a read-only card: {len(beats)}"
    assert probe.main_pid(node) == pid, "the node restarted on a read-only card"
    events = probe.events_between(node, t_ro, time.monotonic())
    assert events, "no event message reached the station from the read-only card"
    last = beats[-1][1]["recorder"].get("last_segment")
    probe.sh(node, "mount -o remount,rw /")
    t_rw = time.monotonic()
    t, hb = probe.heartbeat(node, lambda hb: set(hb["faults"]) <= healthy and _newer_segment(last)(hb),
                            after=t_rw, timeout=180, what="back to health with a new segment")
    say(f"card:   remounted read-write: the faults cleared and a new segment closed {t - t_rw:.1f} s later "
          f"({len(beats)} heartbeats and {len(events)} event messages while read-only)")
    assert probe.main_pid(node) == pid
