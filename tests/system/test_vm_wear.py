"""The card's writes in steady state: what wears a pole's SD card day after day, and who writes it.

The power-cut campaign measures writes in windows that start 20-40 s after a boot, where the
boot dominates (systemd-journald's fresh journal file after an unclean shutdown). Here the node
has been running ``SETTLE_S``; then ``WINDOW_S`` of recording are measured: the block layer's
writes to the card (``/sys/block/vda/stat``), the bytes each process dirtied (``/proc/PID/io``
``write_bytes``, by command name; the ext4 journal's own blocks are jbd2's) and the video the
node stored meanwhile.

What is not video is overhead the card pays whatever the bitrate, and most of it is the
ext4 journal: every fsync commits a transaction (descriptor, the file's inode, bitmap and
extent blocks, commit block) that is written to the journal and later in place. Measured
causes (docs/recording.md): the flush policy's ``fdatasync`` per 2 s fragment, and each event's
synced rows (outbox, open events, the index's event row). The budget, ``BASE_MB_MIN`` + ``PER_EVENT_MB``
for each event started in the window, holds that with about 15 % to spare: a new sync per
heartbeat or per frame, or chatty logging, breaks it. Soak only (``make soak-system``): ten
minutes of an emulated machine.
"""

from __future__ import annotations

import time
from collections import defaultdict

from tests.system import nodeprobe as probe
from tests.system.powercut import STORE

SETTLE_S = 240.0
WINDOW_S = 300.0
#: card writes that are not video, per minute: the node's flush policy and logs (MB/min) ...
BASE_MB_MIN = 1.5
#: ... and per event (start and end) in that minute (MB)
PER_EVENT_MB = 0.08

_SAMPLE = ("cat /sys/block/vda/stat; cut -d' ' -f1 /proc/uptime; find " + STORE + " -name '*.mp4*' "
           "-printf '%s\\n' | awk '{s+=$1} END {print s+0}'; for d in /proc/[0-9]*; do "
           "w=$(sed -n 's/^write_bytes: //p' $d/io 2>/dev/null); [ -n \"$w\" ] && "
           "echo \"P ${d#/proc/} $w $(cat $d/comm 2>/dev/null)\"; done")


def _sample(node) -> tuple[list[int], float, int, dict[int, tuple[str, int]]]:
    """(block stat fields, uptime s, bytes of segment files, {pid: (command, write_bytes)})."""
    out = probe.sh(node, _SAMPLE, timeout=120).splitlines()
    stat, uptime, video = [int(x) for x in out[0].split()], float(out[1]), int(out[2])
    procs = {}
    for line in out[3:]:
        _, pid, written, *comm = line.split()
        procs[int(pid)] = (" ".join(comm) or "?", int(written))
    return stat, uptime, video, procs


def test_steady_state_card_writes_stay_within_their_budget(node, figure):
    probe.heartbeat(node, probe.recording, timeout=900, what="with frames encoded")
    uptime = float(probe.sh(node, "cut -d' ' -f1 /proc/uptime"))
    time.sleep(max(0.0, SETTLE_S - uptime))
    t0, (s0, u0, v0, p0) = time.monotonic(), _sample(node)
    time.sleep(WINDOW_S)
    s1, u1, v1, p1 = _sample(node)
    events = [e for e in probe.events_between(node, t0, time.monotonic()) if e.get("phase") == "start"]
    # still the same node, recording all along
    _, hb = probe.heartbeat(node, probe.recording, timeout=60, what="with frames encoded")
    assert hb["uptime_s"] > u1 - u0, hb["uptime_s"]
    minutes = (u1 - u0) / 60
    written = (s1[6] - s0[6]) * 512 / 1e6 / minutes
    requests = (s1[4] - s0[4]) / minutes
    flushes = ((s1[15] - s0[15]) if len(s1) > 15 else 0) / minutes
    video = (v1 - v0) / 1e6 / minutes
    by: dict[str, float] = defaultdict(float)
    for pid, (comm, w) in p1.items():
        before = p0[pid][1] if pid in p0 and p0[pid][0] == comm else 0
        by[comm] += (w - before) / 1e6 / minutes
    top = sorted(((mb, c) for c, mb in by.items() if mb > 0.005), reverse=True)[:8]
    figure(f"steady state (uptime {u0 / 60:.0f}-{u1 / 60:.0f} min, {len(events) / minutes:.1f} events/min): "
           f"card writes {written:.2f} MB/min ({written * 1440 / 1000:.2f} GB/day), {requests:.0f} write "
           f"requests/min, {flushes:.0f} flushes/min; video {video:.2f} MB/min; not video "
           f"{written - video:.2f} MB/min; dirtied by: " + ", ".join(f"{c} {mb:.2f}" for mb, c in top)
           + f", by no process (the kernel's own) {written - sum(by.values()):.2f} MB/min")
    assert video > 0, "no footage stored in the window"
    budget = BASE_MB_MIN + PER_EVENT_MB * len(events) / minutes
    assert written - video <= budget, f"{written - video:.2f} MB/min not video, budget {budget:.2f}: {top}"
