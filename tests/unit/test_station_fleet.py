"""The fleet overview decides LOST / SILENT / FAULT / OK from messages and (fake) time."""

from __future__ import annotations

import pytest

from node.clock import FakeClock
from station.fleet import Fleet, render

ONLINE = {"state": "online", "reason": ""}


def beat(**kw):
    return {"heartbeat_s": 10.0, "fps_out": 15.0, "faults": {}, "temperatures_c": {"cpu-thermal": 61.5},
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
    # an outage or a quick restart does not change the period: the node states it
    ([(0, "heartbeat", beat()), (0.5, "heartbeat", beat()), (10, "heartbeat", beat()), (12, None, None)],
     "OK"),
    # online (retained) but never a heartbeat: silent after 3 default periods
    ([(0, "status", ONLINE), (31, None, None)], "SILENT"),
    ([(0, "status", ONLINE), (29, None, None)], "OK"),
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


def test_odd_heartbeats_never_crash_the_view():
    fleet = Fleet(FakeClock())
    fleet.feed("pole-5", "heartbeat", {"faults": ["camera"], "temperatures_c": {"a": None, "b": 40},
                                        "fps_out": "fast", "daynight": "night"})
    (row,) = fleet.rows()
    assert row["state"] == "FAULT" and row["temp_c"] == 40 and row["fps"] is None
    assert "pole-5" in render([row])


def test_worst_first_and_rendered():
    clock = FakeClock()
    fleet = Fleet(clock)
    fleet.feed("pole-1", "heartbeat", beat())
    fleet.feed("pole-2", "status", {"state": "offline", "reason": "lost"})
    fleet.feed("pole-3", "heartbeat", beat(faults={"storage": "ENOSPC"}))
    fleet.feed("pole-1", "event", {"id": "x-o1", "phase": "start", "label": "person"})
    fleet.feed("pole-1", "event", {"id": "x-o1", "phase": "start", "label": "person"})  # redelivered
    rows = fleet.rows()
    assert [r["node"] for r in rows] == ["pole-2", "pole-3", "pole-1"]
    assert rows[2]["events"] == 1 and rows[2]["last_event"] == "person"
    text = render(rows)
    assert "LOST" in text and "storage: ENOSPC" in text and "night" in text and "62" in text
