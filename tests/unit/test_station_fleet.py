"""The fleet overview decides LOST / SILENT / FAULT / OK from messages and (fake) time."""

from __future__ import annotations

import pytest

from node.clock import FakeClock
from station.fleet import Fleet, render

ONLINE = {"state": "online", "reason": ""}


def beat(**kw):
    return {"fps_out": 15.0, "faults": {}, "temperatures_c": {"cpu-thermal": 61.5},
            "daynight": {"mode": "night"}, "disk_free_mb": 80000, "retention_days": 41.2, **kw}


@pytest.mark.parametrize(("script", "expected"), [
    # (seconds to advance, leaf, message) ... → state at the end
    ([(0, "status", ONLINE), (0, "heartbeat", beat()), (10, "heartbeat", beat())], "OK"),
    ([(0, "status", ONLINE), (0, "heartbeat", beat()), (10, "heartbeat", beat()), (31, None, None)],
     "SILENT"),
    ([(0, "status", ONLINE), (0, "heartbeat", beat()), (10, "heartbeat", beat()), (29, None, None)], "OK"),
    ([(0, "heartbeat", beat(faults={"camera": "no frame for 30 s"}))], "FAULT"),
    ([(0, "status", ONLINE), (5, "status", {"state": "offline", "reason": "lost"})], "LOST"),
    ([(0, "status", ONLINE), (5, "status", {"state": "offline", "reason": "shutdown"})], "OFFLINE"),
    # an outage does not stretch the period: silence is still judged on the 10 s beat
    ([(0, "heartbeat", beat()), (10, "heartbeat", beat()), (300, "heartbeat", beat()), (31, None, None)],
     "SILENT"),
])
def test_states(script, expected):
    clock = FakeClock()
    fleet = Fleet(clock)
    for dt, leaf, msg in script:
        clock.advance(dt)
        if leaf:
            fleet.feed("pole-7", leaf, msg)
    (row,) = fleet.rows()
    assert row["state"] == expected


def test_worst_first_and_rendered():
    clock = FakeClock()
    fleet = Fleet(clock)
    fleet.feed("pole-1", "heartbeat", beat())
    fleet.feed("pole-2", "status", {"state": "offline", "reason": "lost"})
    fleet.feed("pole-3", "heartbeat", beat(faults={"storage": "ENOSPC"}))
    fleet.feed("pole-1", "event", {"phase": "start", "label": "person"})
    rows = fleet.rows()
    assert [r["node"] for r in rows] == ["pole-2", "pole-3", "pole-1"]
    assert rows[2]["events"] == 1 and rows[2]["last_event"] == "person"
    text = render(rows)
    assert "LOST" in text and "storage: ENOSPC" in text and "night" in text and "62" in text
