"""Legal holds are bounded, owned, expire or are released; protected footage that fills the
card, and a floor that keeps nothing, are faults in words (issue 8, items 26 and 28)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node.clock import FakeClock
from node.record.holds import HoldError, check
from node.record.recorder import Recorder
from node.record.retention import Policy, Retention
from tests.record_media import T0, encode_packets, retime

NOW = datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.mark.parametrize(("name", "owner", "start", "end", "days", "error"), [
    ("case-17", "Officer Lan", NOW - H, NOW, 30, None),
    ("case-17", "Officer Lan", NOW - H, NOW + 2 * H, 30, None),  # footage about to be recorded
    ("forever", "x", datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), 30, "at most 7 days"),
    ("late", "x", NOW + 3 * H, NOW + 2 * 24 * H, 30, "in the future"),
    ("nobody", "  ", NOW - H, NOW, 30, "owner"),
    ("backwards", "x", NOW, NOW - H, 30, "after start"),
    ("endless", "x", NOW - H, NOW, 10_000, "days"),
    ("never", "x", NOW - H, NOW, 0, "days"),
    ("bad/name", "x", NOW - H, NOW, 30, "name"),
])
def test_hold_rules(name, owner, start, end, days, error):
    try:
        expires = check(name, owner, start, end, days, NOW)
    except HoldError as exc:
        assert error and error in str(exc), exc
    else:
        assert error is None and expires == NOW + timedelta(days=days)


def _recorder(root: Path, clock: FakeClock, **policy) -> Recorder:
    info, pkts = encode_packets(12, gop_s=1.0)
    rec = Recorder(root, clock, segment_s=3.0, threaded=False,
                   policy=Policy(**({"headroom_s": 0, "min_free_bytes": 0} | policy)))
    rec.start(info)
    for p in retime(pkts, 0.0):
        rec.write(p)
    rec.stop()
    return rec


def _protected(rec: Recorder) -> list[int]:
    return [r["seq"] for r in rec.store.index.rows(live_only=True) if r["protected"]]


def test_hold_release_and_expiry_survive_an_index_rebuild(tmp_path):
    clock = FakeClock(T0 + timedelta(minutes=10))
    rec = _recorder(tmp_path, clock)
    assert len(rec.store.index.rows(live_only=True)) == 4  # 12 s in 3 s segments
    out = rec.hold("case-1", T0, T0 + timedelta(seconds=4), owner="Officer Lan", days=2)
    assert out["segments"] == 2 and out["owner"] == "Officer Lan"
    rec.hold("case-2", T0 + timedelta(seconds=7), T0 + timedelta(seconds=8), owner="Case 2026/17", days=1)
    rec.protect("ev-1", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))  # an event clip
    assert _protected(rec) == [1, 2, 3]
    assert rec.release("case-1") and not rec.release("case-1")
    assert _protected(rec) == [1, 3]  # seg 1 stays protected: the event clip covers it too
    rec.close()
    (tmp_path / "index.db").unlink()  # the index is lost: rebuilt from the files and journal
    for extra in ("index.db-wal", "index.db-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    again = Recorder(tmp_path, clock, segment_s=3.0, threaded=False,
                     policy=Policy(headroom_s=0, min_free_bytes=0))
    assert [h["hold"] for h in again.holds()] == ["case-2"] and _protected(again) == [1, 3]
    clock.advance(86_400 + 1)  # case-2 expires after one day: the next sweep releases it
    again.tick()
    assert again.holds() == [] and _protected(again) == [1]
    again.close()


def test_protected_footage_filling_the_card_is_a_fault_not_silent_deletion(tmp_path):
    clock = FakeClock(T0 + timedelta(minutes=10))
    rec = _recorder(tmp_path, clock)
    total = rec.store.index.totals()["bytes"]
    rec.hold("case-1", T0, T0 + timedelta(seconds=12), owner="Officer Lan")
    card = {"bytes": 3 * total}  # a card of three times the footage: free = card - footage

    def free(_p=None) -> int:
        return card["bytes"] - rec.store.index.totals()["bytes"]

    ret = Retention(rec.store, clock, Policy(headroom_s=0, min_free_bytes=int(total * 1.5)),
                    free_fn=free)
    assert "protected" not in ret.verdict(free(), 1000.0)  # held footage fits beside the floor
    card["bytes"] = 2 * total + total // 4  # a card where the floor leaves less than the hold
    assert "protected footage (" in ret.verdict(free(), 1000.0)
    assert "fills the card" in ret.verdict(free(), 1000.0)
    rep = ret.sweep()  # below the floor, but the writer has room: the hold is kept, said so
    assert rep.protected_deleted == [] and rep.short_of_space
    assert "protected footage (" in ret.verdict(free(), 1000.0)
    card["bytes"] = total + rec.store.index.recent_max_bytes()  # not even two segments' room
    rep = ret.sweep()
    assert rep.protected_deleted  # recording must go on...
    text = ret.verdict(free(), 1000.0)
    # (a card this small keeps no footage beside the floor at all: that text, with the deletion)
    assert text.startswith("no footage is kept") and "1 protected segment(s)" in text
    # the card has room again (what filled it removed): the past deletion is no lasting fault
    card["bytes"] = 20 * total
    assert "protected" not in (ret.verdict(free(), 1000.0) or "")
    assert ret.protected_deleted_total > 0  # still counted (the recorder's health names them)
    rec.close()


def test_a_floor_that_keeps_nothing_says_so(tmp_path):
    """Item 28: the default floor (256 MiB) on a small card deletes every closed segment; the
    fault must say that nothing is kept and why, not 'card holds ~0.0 days'."""
    clock = FakeClock(T0 + timedelta(minutes=10))
    card = 64 << 20
    rec = _recorder(tmp_path, clock)
    ret = Retention(rec.store, clock, Policy(), free_fn=lambda _p: card)  # default floor
    ret.sweep()
    assert rec.store.index.totals()["segments"] == 0  # every closed segment deleted
    text = ret.verdict(card, ret.rate())
    # 268 MB: the reserve (256 MiB, below the hour's headroom); 67 MB: the 64 MiB card
    assert text.startswith("no footage is kept") and "reserve (268 MB" in text and "67 MB" in text
    shortfall = Retention(_recorder(tmp_path / "b", clock).store, clock,
                          Policy(min_free_bytes=0, headroom_s=0), free_fn=lambda _p: card)
    assert shortfall.verdict(card, shortfall.rate()).startswith("card holds ~")  # a different text
    rec.close()
