"""A full card: an 8 MiB tmpfs (a real filesystem that returns ENOSPC), a real threaded recorder.

Video is fed ~20x faster than real time, so the card fills many times over within seconds and
the writer really meets ENOSPC between retention sweeps (the emergency path), not only the
free-space floor.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from node.clock import FakeClock
from node.record.recorder import Recorder
from node.record.retention import Policy
from node.record.segment import PART, segment_files
from tests.record_media import T0, decode_count, encode_packets, retime

CARD_BYTES = 8 << 20


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs; a loop-mounted ext4 image where tmpfs cannot be mounted."""
    mnt = tmp_path / "card"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={CARD_BYTES}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        img = tmp_path / "card.img"
        with open(img, "wb") as fh:
            fh.truncate(CARD_BYTES + (2 << 20))
        subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, capture_output=True)
        r2 = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
        if r2.returncode != 0:
            pytest.fail(f"cannot mount a small filesystem: {r.stderr.strip()} / {r2.stderr.strip()}")
    try:
        st = os.statvfs(mnt)
        assert st.f_blocks * st.f_frsize <= CARD_BYTES + (2 << 20)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _feed(rec: Recorder, seconds: float, loops: int):
    info, pkts = encode_packets(seconds, size=(640, 360), kbps=2000, gop_s=1.0)
    rec.start(info)
    fed = []
    for i in range(loops):
        for p in retime(pkts, i * seconds):
            rec.write(p)  # must never raise, whatever the disk says
            fed.append(p)
        rec.clock.sleep(0)  # no-op on purpose: feeding is as fast as the writer takes it
    rec.stop()
    return info, fed


def _check_files(rec: Recorder, root: Path) -> list[dict]:
    files = segment_files(root)
    assert not [p for p in files if p.name.endswith(PART)]
    live = rec.store.index.rows(live_only=True)
    assert sorted(p.name for p in files) == sorted(r["name"] for r in live)
    for r in live:
        assert decode_count(rec.store.path_of(r["name"])) == r["frames"]
    return live


def test_recording_continues_through_a_full_card_and_keeps_protected_footage(card: Path) -> None:
    clock = FakeClock(T0)
    rec = Recorder(card, clock, segment_s=2.0, sweep_s=0.2,
                   policy=Policy(headroom_s=2.0, min_free_bytes=256 << 10))
    rec.protect("ev-early", T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=1.5))
    _info, fed = _feed(rec, 20.0, loops=6)  # 120 s at 2 Mbit/s: ~30 MB through an 8 MiB card
    h = rec.health()
    live = _check_files(rec, card)
    all_rows = rec.store.index.rows()
    # recording went on: the newest footage is there, up to the last packet fed
    assert live[-1]["end_us"] >= round((fed[-1].utc - T0).total_seconds() * 1e6) + \
        round(T0.timestamp() * 1e6)
    # nothing was lost beyond what retention deleted: every frame fed is in a row (live or tombstone)
    assert sum(r["frames"] for r in all_rows) + h["dropped_packets"] >= len(fed) * 0.97
    # retention deleted most of it, oldest first, but never the protected segment
    assert len(all_rows) - len(live) > 20
    assert live[0]["seq"] == 1 and live[0]["protected"] == 1
    assert all(r["protected"] == 0 for r in all_rows if r["deleted_us"] is not None)
    assert h["protected_deleted"] == []
    assert h["disk_free_bytes"] > 0 and h["retention_days_projected"] < 1
    assert h["retention_ok"] is False  # an 8 MiB card cannot hold 30 days: the node says so
    rec.close()


def test_protected_footage_goes_only_when_nothing_else_is_left_and_is_reported(card: Path) -> None:
    clock = FakeClock(T0)
    rec = Recorder(card, clock, segment_s=2.0, sweep_s=0.2,
                   policy=Policy(headroom_s=2.0, min_free_bytes=256 << 10))
    rec.protect("ev-all", T0, None)  # an open-ended event: everything from now on is protected
    _info, _fed = _feed(rec, 20.0, loops=3)
    h = rec.health()
    live = _check_files(rec, card)
    assert h["protected_deleted"], "deleting protected footage is reported"
    assert all(r["protected"] == 1 for r in rec.store.index.rows())
    # still recording: the newest protected segments are the ones kept
    assert live[-1]["seq"] == max(r["seq"] for r in rec.store.index.rows())
    assert rec.retention.protected_deleted_total >= len(h["protected_deleted"]) > 0
    rec.close()
