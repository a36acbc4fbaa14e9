"""Index, events, store reconciliation and retention: real SQLite, real files, injected clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from node.clock import FakeClock
from node.record.index import Index
from node.record.integrity import GENESIS
from node.record.recorder import Recorder
from node.record.retention import Policy, Retention
from node.record.segment import SegmentInfo, segment_files, to_us
from node.record.store import Store
from tests.record_media import T0, encode_packets, retime

MIN = 60_000_000  # µs


def _info(seq: int, start_min: float, minutes: float = 1.0) -> SegmentInfo:
    s = to_us(T0) + int(start_min * MIN)
    return SegmentInfo(seq, f"seg{seq}", s, s + int(minutes * MIN), 900, 30, True, 0.0, False,
                       1000, "ab" * 32, GENESIS, "cd" * 32)


def _index(n: int) -> Index:
    idx = Index(":memory:")
    idx.add_many([(_info(i + 1, i), 1_000_000) for i in range(n)])
    return idx


def test_range_lookup_returns_overlapping_segments_in_order() -> None:
    idx = _index(100)
    lo, hi = to_us(T0) + 10 * MIN + MIN // 2, to_us(T0) + 13 * MIN
    assert [r["seq"] for r in idx.range(lo, hi)] == [11, 12, 13]
    assert idx.range(to_us(T0) - 5 * MIN, to_us(T0)) == []
    assert [r["seq"] for r in idx.range(to_us(T0) + 99 * MIN, to_us(T0) + 200 * MIN)] == [100]


@pytest.mark.parametrize(("ev_start", "ev_end", "flagged"), [
    (10.5, 10.7, [11]),             # inside one segment
    (10.5, 12.2, [11, 12, 13]),     # spans three
    (11.0, 12.0, [12]),             # exactly one segment (half-open ranges)
    (98.5, None, [99, 100, 101]),   # open-ended: also flags segments written later
])
def test_events_flag_the_segments_they_cover(ev_start, ev_end, flagged) -> None:
    idx = _index(100)
    t = to_us(T0)
    idx.upsert_event("e1", t + int(ev_start * MIN), None if ev_end is None else t + int(ev_end * MIN),
                     person=True, protect=True)
    idx.add(_info(101, 100), 1_000_000)  # a segment closed after the event started
    got = [r["seq"] for r in idx.rows() if r["protected"]]
    assert got == flagged
    assert all(idx.get(s)["person"] == 1 and idx.event_ids(s) == ["e1"] for s in flagged)


def test_event_update_only_extends() -> None:
    idx = _index(10)
    t = to_us(T0)
    idx.upsert_event("e", t + 2 * MIN, t + 3 * MIN, motion=True)
    idx.upsert_event("e", t + 4 * MIN, t + 5 * MIN, person=True)
    [ev] = idx.events()
    assert (ev["start_us"], ev["end_us"], ev["motion"], ev["person"]) == (t + 2 * MIN, t + 5 * MIN, 1, 1)


class FakeDisk:
    """Free space of a pretend card: capacity minus the bytes of the files under root."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def __call__(self, root: Path) -> int:
        used = sum(p.stat().st_size for p in segment_files(root))
        return self.capacity - used


def _recorded(tmp_path: Path, seconds: float = 30, segment_s: float = 3.0):
    info, pkts = encode_packets(seconds, gop_s=1.0)
    clock = FakeClock(T0 + timedelta(seconds=seconds))
    rec = Recorder(tmp_path, clock, segment_s=segment_s, threaded=False,
                   policy=Policy(max_age_days=30, headroom_s=0, min_free_bytes=0))
    rec.start(info)
    for p in pkts:
        rec.write(p)
    rec.stop()
    return rec, clock, pkts


def _live(rec: Recorder) -> list[int]:
    return [r["seq"] for r in rec.store.index.rows(live_only=True)]


# Retention as a table: (age of "now" past the recording, free-space floor in segments,
# protected seqs) -> seqs that must remain. 10 segments of ~60 kB each.
@pytest.mark.parametrize(("age_days", "floor_segs", "protect", "kept", "protected_deleted"), [
    (0, 0, [], list(range(1, 11)), []),              # nothing to do
    (31, 0, [], [], []),                             # all older than 30 days
    (31, 0, [3, 4], [3, 4], []),                     # age never deletes protected footage
    (0, 3, [], list(range(4, 11)), []),              # space: oldest first
    (0, 3, [1, 2], [1, 2, *range(6, 11)], []),       # space skips protected while others exist
    (0, 11, [1, 2], [1, 2], []),                     # the floor alone never costs protected footage
])
def test_retention_table(tmp_path: Path, age_days, floor_segs, protect, kept, protected_deleted) -> None:
    rec, clock, _ = _recorded(tmp_path)
    idx = rec.store.index
    rows = idx.rows()
    assert len(rows) == 10
    for seq in protect:
        r = idx.get(seq)
        rec.protect(f"ev{seq}", T0 + timedelta(microseconds=r["start_us"] - to_us(T0) + 1000),
                    T0 + timedelta(microseconds=r["start_us"] - to_us(T0) + 2000))
    sizes = [r["bytes"] for r in rows]
    assert max(sizes) * 2 < min(sizes) * 3  # so "k segments' worth" is unambiguous below
    disk = FakeDisk(sum(sizes) + 10)  # the card is full but for 10 bytes
    ret = Retention(rec.store, clock, Policy(max_age_days=30, headroom_s=0,
                                             min_free_bytes=floor_segs * min(sizes) + 10),
                    free_fn=disk)
    clock.advance(age_days * 86_400)
    rep = ret.sweep()
    assert _live(rec) == kept
    assert [n.split("-")[-1].split(".")[0].lstrip("0") for n in rep.protected_deleted] == protected_deleted
    assert sorted(p.name for p in segment_files(tmp_path)) == sorted(idx.live_names())
    # every deletion is journalled and tombstoned (the chain stays verifiable)
    dels = [e for e in rec.store.journal.entries() if e["t"] == "del"]
    assert len(dels) == 10 - len(kept)
    # the running totals (kept incrementally) agree with the table
    live = idx.rows(live_only=True)
    t = idx.totals()
    assert (t["bytes"], t["segments"]) == (sum(r["bytes"] for r in live), len(live))
    assert t["protected_bytes"] == sum(r["bytes"] for r in live if r["protected"])
    assert t["oldest_start_us"] == (live[0]["start_us"] if live else 0)
    rec.close()


def test_projected_days_and_floor_follow_the_measured_bitrate(tmp_path: Path) -> None:
    rec, clock, _ = _recorded(tmp_path)
    rate = rec.retention.rate()
    kept = rec.store.index.totals()["bytes"]
    assert rate == pytest.approx(kept / 30.0, rel=0.02)  # bytes per second of what was written
    ret = Retention(rec.store, clock, Policy(headroom_s=3600, min_free_bytes=0),
                    free_fn=lambda _r: int(rate * 86_400 * 10))
    assert ret.floor() == int(3600 * rate)
    rep = ret.sweep()
    assert rep.projected_days == pytest.approx(10 + (kept - 3600 * rate) / (rate * 86_400), rel=1e-6)
    h = rec.health()
    assert set(h) >= {"disk_free_bytes", "retention_days_projected", "current_segment", "last_error",
                      "protected_bytes", "retention_ok"}
    rec.close()


@pytest.mark.parametrize("room_segs, floor_segs", [
    (20.0, 8.0),  # room for 2 x the headroom: the floor is the headroom, all 10 kept
    (12.0, 6.0),  # less: the headroom takes half the room (the whole of it kept 4 of 12)
    (10.0, 5.0),  # the card full but for 10 bytes: half of it rings (the old floor kept 2)
    (4.0, 2.0),   # the reserve (min_free) is the floor's least: 2 segments' worth kept
    (1.5, 2.0),   # less room than the reserve: nothing kept, and the fault says so
])
def test_the_headroom_never_takes_more_than_half_the_room_footage_has(
        tmp_path: Path, room_segs: float, floor_segs: float) -> None:
    """A card something else has filled (or a small card): the free-space floor's headroom (8
    segments here) is capped at half the room footage has, never below the reserve (2 segments),
    so the ring keeps the newest footage that fits instead of deleting each segment as it closes."""
    rec, clock, _ = _recorded(tmp_path)
    sizes = [r["bytes"] for r in rec.store.index.rows()]
    seg = sum(sizes) // len(sizes)
    room = int(room_segs * seg)
    rate = rec.retention.rate()
    ret = Retention(rec.store, clock, Policy(headroom_s=8 * seg / rate, min_free_bytes=2 * seg),
                    free_fn=lambda _r: room - rec.store.index.totals()["bytes"])
    floor = int(floor_segs * seg)
    assert ret.floor(rate, room - sum(sizes)) == pytest.approx(floor, abs=1)
    rep = ret.sweep()
    kept = rec.store.index.totals()["bytes"]
    assert rep.floor_bytes == pytest.approx(floor, abs=1)
    assert room - kept >= floor - 1 or kept == 0  # (the floor out of reach: nothing kept)
    gone = len(sizes) - rec.store.index.totals()["segments"]
    # no more deleted than the floor needs; never less kept than the uncapped floor kept
    assert gone == 0 or room - kept - sizes[gone - 1] < floor
    assert kept >= min(sum(sizes), room - 8 * seg)
    verdict = ret.verdict(room - kept, rate)
    if room_segs < 2:
        assert kept == 0 and verdict.startswith("no footage is kept") and "reserve" in verdict
    elif room_segs < 16:
        assert kept > 0 and verdict.startswith("card holds ~") and " min at" in verdict, verdict
    rec.close()


def test_lost_index_is_rebuilt_with_events_and_tombstones(tmp_path: Path) -> None:
    rec, clock, _ = _recorded(tmp_path)
    first = rec.store.index.get(1)
    rec.protect("ev", T0 + timedelta(seconds=10), T0 + timedelta(seconds=11))
    rec.store.delete(1, "age")
    before = [(r["seq"], r["sha256"], r["protected"], r["deleted_us"] is not None)
              for r in rec.store.index.rows()]
    rec.close()
    for p in tmp_path.glob("index.db*"):
        p.unlink()
    store = Store(tmp_path, clock=clock)
    rep = store.open()
    assert rep["indexed_from_files"] == 9
    after = [(r["seq"], r["sha256"], r["protected"], r["deleted_us"] is not None)
             for r in store.index.rows()]
    assert after == before
    assert store.index.get(1)["chain"] == first["chain"]
    store.close()


def test_corrupt_index_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    rec, clock, _ = _recorded(tmp_path)
    names = sorted(rec.store.index.live_names())
    rec.close()
    for p in tmp_path.glob("index.db-*"):
        p.unlink()
    (tmp_path / "index.db").write_bytes(b"\x00garbage" * 512)
    store = Store(tmp_path, clock=clock)
    rep = store.open()
    assert rep["index_corrupt"] and rep["indexed_from_files"] == 10
    assert sorted(store.index.live_names()) == names
    assert list(tmp_path.glob("index.db.corrupt-*"))
    store.close()


def test_interrupted_deletion_is_finished_on_open(tmp_path: Path) -> None:
    rec, clock, _ = _recorded(tmp_path)
    rec.store.index.tombstone(2, to_us(clock.utc()), "age")  # crash before the unlink
    rec.close()
    store = Store(tmp_path, clock=clock)
    assert store.open()["finished_deletions"] == 1
    assert len(segment_files(tmp_path)) == 9
    store.close()


def test_writer_restart_continues_sequence_and_chain(tmp_path: Path) -> None:
    rec, clock, pkts = _recorded(tmp_path, seconds=6)
    head = rec.store.index.head()
    rec.close()
    info, _ = encode_packets(6, gop_s=1.0)
    rec2 = Recorder(tmp_path, clock, segment_s=3.0, threaded=False,
                    policy=Policy(headroom_s=0, min_free_bytes=0))
    rec2.start(info)
    for p in retime(pkts, 100.0):
        rec2.write(p)
    rec2.stop()
    rows = rec2.store.index.rows()
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["prev"] == head[1]
    rec2.close()


def test_event_left_open_by_a_crash_is_closed_at_the_footage_end(tmp_path: Path) -> None:
    rec, clock, pkts = _recorded(tmp_path, seconds=6)
    rec.protect("ev-open", T0 + timedelta(seconds=1), None)  # the node dies before the end
    end = rec.store.index.head()
    rec.close()
    store = Store(tmp_path, clock=clock)
    assert store.open()["events_closed"] == 1
    [ev] = store.index.events()
    assert ev["end_us"] == store.index.get(end[0])["end_us"]
    store.close()
    # footage recorded after the restart is not protected by the dead event
    info, _ = encode_packets(6, gop_s=1.0)
    rec2 = Recorder(tmp_path, clock, segment_s=3.0, threaded=False,
                    policy=Policy(headroom_s=0, min_free_bytes=0))
    rec2.start(info)
    for p in retime(pkts, 100.0):
        rec2.write(p)
    rec2.stop()
    assert [r["protected"] for r in rec2.store.index.rows()] == [1, 1, 0, 0]
    rec2.close()


def test_journal_is_compacted_and_still_rebuilds_the_index(tmp_path: Path) -> None:
    rec, clock, _ = _recorded(tmp_path)
    rec.protect("ev", T0 + timedelta(seconds=25), T0 + timedelta(seconds=26))
    for _ in range(3):  # the same event re-sent: three journal lines, one event
        rec.mark("ev", T0 + timedelta(seconds=25), T0 + timedelta(seconds=26), True, False)
    for seq in (1, 2, 3, 4):
        rec.store.delete(seq, "age")
    rec.store.index.prune_tombstones()  # keeps seq 4, the chain anchor
    assert len(rec.store.journal.entries()) == 8
    assert rec.store.compact_journal(limit_bytes=0)
    kinds = sorted(e["t"] for e in rec.store.journal.entries())
    assert kinds == ["del", "event"]
    before = [(r["seq"], r["chain"], r["protected"], r["motion"], r["deleted_us"] is not None)
              for r in rec.store.index.rows()]
    rec.close()
    for p in tmp_path.glob("index.db*"):
        p.unlink()
    store = Store(tmp_path, clock=clock)
    store.open()
    after = [(r["seq"], r["chain"], r["protected"], r["motion"], r["deleted_us"] is not None)
             for r in store.index.rows()]
    assert after == before
    store.close()


def test_a_segment_protected_after_retention_chose_it_is_kept(tmp_path: Path) -> None:
    rec, _clock, _ = _recorded(tmp_path)
    r = rec.store.index.get(1)
    rec.store.index.upsert_event("late", r["start_us"], r["end_us"], protect=True)
    assert rec.store.delete(1, "space") == 0  # chosen while unprotected, protected since
    assert rec.store.index.get(1)["deleted_us"] is None
    assert rec.store.delete(1, "space-protected", allow_protected=True) > 0
    rec.close()


def test_protected_footage_goes_only_when_the_writer_has_no_room(tmp_path: Path) -> None:
    """Everything protected on a card full but for 10 bytes: the oldest protected segments go,
    reported, until two recent segments' worth is free (what the writer needs), not to the floor."""
    rec, clock, _ = _recorded(tmp_path)
    idx = rec.store.index
    rows = idx.rows()
    rec.protect("ev-all", T0, None)
    sizes = [r["bytes"] for r in rows]
    disk = FakeDisk(sum(sizes) + 10)
    ret = Retention(rec.store, clock, Policy(max_age_days=30, headroom_s=0,
                                             min_free_bytes=sum(sizes)), free_fn=disk)
    writer_min = 2 * idx.recent_max_bytes()
    rep = ret.sweep()
    gone = len(rep.protected_deleted)
    assert gone >= 2 and rep.short_of_space
    assert sum(sizes[:gone]) + 10 >= writer_min > sum(sizes[:gone - 1]) + 10  # no more than needed
    assert _live(rec) == list(range(gone + 1, 11))


def test_the_headroom_cap_counts_only_the_rings_room_not_protected_footage(tmp_path: Path) -> None:
    """Event clips and holds are not the ring's to give: with 4 of 10 segments held on a full
    card, the headroom (8 segments) is capped at half of the 6 the ring has, so about 3 ring
    on (counting the held ones as room left 1)."""
    rec, clock, _ = _recorded(tmp_path)
    rows = rec.store.index.rows()
    sizes = [r["bytes"] for r in rows]
    seg = sum(sizes) // len(sizes)
    held = rows[3]
    rec.hold("case-1", T0, T0 + timedelta(microseconds=held["end_us"] - to_us(T0) - 1000), owner="test")
    protected = rec.store.index.totals()["protected_bytes"]
    assert protected == sum(sizes[:4])
    room = sum(sizes) + 10
    rate = rec.retention.rate()
    ret = Retention(rec.store, clock, Policy(headroom_s=8 * seg / rate, min_free_bytes=seg),
                    free_fn=lambda _r: room - rec.store.index.totals()["bytes"])
    rep = ret.sweep()
    t = rec.store.index.totals()
    assert rep.protected_deleted == [] and t["protected_bytes"] == protected
    assert rep.floor_bytes == pytest.approx((room - protected) // 2, abs=1)
    assert t["bytes"] - protected >= 2 * min(sizes[4:]), (t, rep)  # the ring still rings
    assert "fills the card" not in (ret.verdict(room - t["bytes"], rate) or "")
    rec.close()
