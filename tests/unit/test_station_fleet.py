"""The fleet overview decides LOST / SILENT / FAULT / OK from messages and (fake) time.

The heartbeats it is fed are the node's own (:meth:`node.app.Node.heartbeat` on real parts:
recorder, link, day/night, a fixture Pi 4 for the temperatures), with a field changed where a
row says so — never a hand-written imitation that could drift from what nodes send.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hw.platform import probe
from node.app import Node
from node.clock import FakeClock
from node.config import config_from_dict
from node.link.topics import HEARTBEAT_FIELDS
from station.fleet import Fleet, render

ONLINE = {"state": "online", "reason": ""}
BOARDS = Path(__file__).resolve().parents[1] / "fixtures" / "boards"


@pytest.fixture(scope="module")
def node_beat(tmp_path_factory) -> dict:
    """A healthy node's heartbeat, made by the node (10 s period, night, on a Pi 4 fixture)."""
    root = tmp_path_factory.mktemp("node")
    cfg = config_from_dict({"node": {"id": "pole-7"}, "storage": {"path": str(root / "rec")},
                            "record": {"max_age_days": 0.01},  # any free disk holds that
                            "mqtt": {"port": 1, "heartbeat_s": 10.0}})
    node = Node(cfg, clock=FakeClock(), platform=probe(str(BOARDS / "pi4")))
    try:
        node.daynight.force("night", 60)
        hb = node.heartbeat()
    finally:
        node.stop()
    assert set(HEARTBEAT_FIELDS) <= set(hb) and hb["heartbeat_s"] == 10.0
    assert hb["faults"] == {} and hb["daynight"]["mode"] == "night" and hb["temperatures_c"]
    return hb


def beat(**changed):
    """The node's heartbeat (filled in by the test from ``node_beat``), with ``changed``."""
    return ("beat", changed)


def real(msg, node_beat: dict):
    return {**node_beat, **msg[1]} if isinstance(msg, tuple) else msg


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
def test_states(script, expected, node_beat):
    clock = FakeClock()
    fleet = Fleet(clock)
    for dt, leaf, msg in script:
        clock.advance(dt)
        if leaf:
            fleet.feed("pole-7", leaf, real(msg, node_beat))
    (row,) = fleet.rows()
    assert row["state"] == expected


def test_odd_heartbeats_never_crash_the_view():
    fleet = Fleet(FakeClock())
    fleet.feed("pole-5", "heartbeat", {"faults": ["camera"], "temperatures_c": {"a": None, "b": 40},
                                        "fps_out": "fast", "daynight": "night"})
    (row,) = fleet.rows()
    assert row["state"] == "FAULT" and row["temp_c"] == 40 and row["fps"] is None
    assert "pole-5" in render([row])
    # a period no node states (a 400-digit integer overflowed a float and lost the heartbeat)
    fleet.feed("pole-6", "heartbeat", {"heartbeat_s": 10 ** 400, "temperatures_c": {"cpu": 10 ** 400}})
    (six,) = [r for r in fleet.rows() if r["node"] == "pole-6"]
    assert six["state"] == "OK" and six["temp_c"] is None


def test_worst_first_and_rendered(node_beat):
    clock = FakeClock()
    fleet = Fleet(clock)
    fleet.feed("pole-1", "heartbeat", real(beat(), node_beat))
    fleet.feed("pole-2", "status", {"state": "offline", "reason": "lost"})
    fleet.feed("pole-3", "heartbeat", real(beat(faults={"storage": "ENOSPC"}), node_beat))
    fleet.feed("pole-1", "event", {"id": "x-o1", "phase": "start", "label": "person"})
    fleet.feed("pole-1", "event", {"id": "x-o1", "phase": "start", "label": "person"})  # redelivered
    rows = fleet.rows()
    assert [r["node"] for r in rows] == ["pole-2", "pole-3", "pole-1"]
    assert rows[2]["events"] == 1 and rows[2]["last_event"] == "person"
    text = render(rows)
    assert "LOST" in text and "storage: ENOSPC" in text and "night" in text
    assert rows[2]["temp_c"] == 52.6 and f"{rows[2]['disk_free_mb']:8.0f}" in text  # the Pi 4's zone
