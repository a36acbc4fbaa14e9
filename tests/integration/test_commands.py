"""Technician commands over a real broker: answers, and clear errors for bad input."""

from __future__ import annotations

import json
import threading
import time

import pytest

from node.app import Node
from station.cli import main as station
from station.command import request
from station.connect import Connection
from tests.integration.test_node_inprocess import small_config
from tests.stationproc import wait_until


@pytest.fixture
def running(tmp_path, broker):
    node = Node(small_config(tmp_path, broker.port))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    assert node.link.wait_connected(10)
    assert node.link.subscribed.wait(10)  # the node's cmd/# subscription is acknowledged
    yield node, broker
    stop.set()
    th.join(30)


def ask(broker, name, args=None):
    return request(Connection(broker.host, broker.port), "pole-9", name, args, timeout_s=10)


def test_diag_reports_everything(running):
    node, broker = running
    deadline = time.monotonic() + 10
    while node.encoder_report is None and time.monotonic() < deadline:
        time.sleep(0.1)
    r = ask(broker, "diag")
    assert r["ok"], r
    res = r["result"]
    assert res["node_id"] == "pole-9"
    assert res["encoder_selection"]["chosen"] == "libx264"
    assert any(not a["ok"] for a in res["encoder_selection"]["attempts"])  # hw encoders rejected
    assert res["platform"]["kind"]
    assert res["camera"]["backend"] == "synthetic"
    assert res["config"]["mqtt"]["port"] == broker.port
    assert res["vision"]["detect"]["enabled"] is False  # no model in this config: motion only
    assert "labels file not readable" in res["vision"]["detect"]["reason"]


def test_ir_override_and_its_errors(running, capsys):
    node, broker = running
    r = ask(broker, "ir", {"mode": "night", "minutes": 5})
    assert r["ok"] and r["result"]["mode"] == "night" and r["result"]["override"] == "night"
    assert node.daynight.state.mode == "night"
    assert station(["ir", "--port", str(broker.port), "pole-9", "auto"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["override"] is None
    for args, words in [({"mode": "dark"}, "mode must be"), ({"mode": "night", "minutes": -1}, "minutes"),
                        ({"mode": "night", "brightnes": 1}, "unknown argument")]:
        r = ask(broker, "ir", args)
        assert not r["ok"] and words in r["error"], r


def test_malformed_unknown_and_oversized_commands(running, subscriber_factory):
    node, broker = running
    replies = subscriber_factory(broker.host, broker.port, "camnode/pole-9/reply/#")
    import paho.mqtt.publish as publish

    publish.single("camnode/pole-9/cmd/ir", b"{not json", hostname=broker.host, port=broker.port)
    publish.single("camnode/pole-9/cmd/ir", b"[1, 2]", hostname=broker.host, port=broker.port)
    publish.single("camnode/pole-9/cmd/ir", b"x" * 20000, hostname=broker.host, port=broker.port)
    publish.single("camnode/pole-9/cmd/selfdestruct", b"{}", hostname=broker.host, port=broker.port)
    assert replies.wait_for(lambda s: len(s.messages) >= 4, 10)
    errors = [json.loads(p)["error"] for _, p, _ in replies.messages]
    assert any("not UTF-8 JSON" in e for e in errors)
    assert any("JSON object" in e for e in errors)
    assert any("exceeds" in e for e in errors)
    assert any("unknown command 'selfdestruct'" in e for e in errors)
    assert node.commands.rejected == 4 and node.daynight.state.force is None  # nothing changed
    # and the node kept recording through all of it
    before = node.pipeline.counters.frames_encoded
    wait_until(lambda: node.pipeline.counters.frames_encoded > before, 10, 0.1)
    assert node.pipeline.counters.frames_encoded > before


def test_hold_validates_times(running):
    _, broker = running
    bad = ask(broker, "hold", {"start": "yesterday", "end": "2026-01-01T00:00:00Z"})
    assert not bad["ok"] and "ISO 8601" in bad["error"]
    naive = ask(broker, "hold", {"start": "2026-01-01T00:00:00", "end": "2026-01-01T01:00:00Z"})
    assert not naive["ok"] and "time zone" in naive["error"]
    ok = ask(broker, "hold", {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                              "name": "case-17", "owner": "Officer Lan"})
    assert ok["ok"] and ok["result"]["hold"] == "case-17"
    # issue 8/26: unbounded, ownerless holds are refused; a hold can be listed and released
    forever = ask(broker, "hold", {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z",
                                   "owner": "x"})
    assert not forever["ok"] and "at most 7 days" in forever["error"]
    nobody = ask(broker, "hold", {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"})
    assert not nobody["ok"] and "owner" in nobody["error"]
    listed = ask(broker, "holds")["result"]["holds"]
    assert [(h["hold"], h["owner"]) for h in listed] == [("case-17", "Officer Lan")]
    assert ask(broker, "release", {"name": "case-17"})["ok"]
    assert ask(broker, "holds")["result"]["holds"] == []
    again = ask(broker, "release", {"name": "case-17"})
    assert not again["ok"] and "no hold named" in again["error"]


def test_hold_protects_recorded_footage(running):
    node, broker = running
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and node.recorder.health()["segments_closed"] < 2:
        time.sleep(0.2)
    start = node.clock.utc().replace(microsecond=0) - __import__("datetime").timedelta(seconds=30)
    r = ask(broker, "hold", {"start": start.isoformat(), "end": node.clock.utc().isoformat(),
                             "name": "case-18", "owner": "Case 2026/18"})
    assert r["ok"] and r["result"]["segments"] >= 2, r
    import sqlite3

    db = sqlite3.connect(node.recorder.root / "index.db")
    assert db.execute("SELECT count(*) FROM segments WHERE protected = 1").fetchone()[0] >= 2


def test_ir_command_drives_the_pins(tmp_path, broker):
    from hw.gpio import GpioSpec, build_devices, make_pin_factory

    factory = make_pin_factory("mock")
    devices = build_devices(GpioSpec(factory="mock", ir_pin=17, ircut_mode="level", ircut_pin=27),
                            pin_factory=factory)
    node = Node(small_config(tmp_path, broker.port), devices=devices)
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        assert node.link.wait_connected(10) and node.link.subscribed.wait(10)
        assert ask(broker, "ir", {"mode": "night", "minutes": 1})["ok"]
        assert factory.pin(17).state == 1 and factory.pin(27).state == 1  # IR on, filter out
        assert ask(broker, "ir", {"mode": "day"})["ok"]
        assert factory.pin(17).state == 0 and factory.pin(27).state == 0
        assert ask(broker, "ir", {"mode": "night"})["ok"]
    finally:
        stop.set()
        th.join(30)
    assert factory.pin(17).state == 0  # stop leaves the IR off


def test_station_pulls_a_verified_clip_over_mqtt(running, tmp_path, capsys, monkeypatch):
    """The police post asks for a range; the node remuxes and streams it; the clip plays and its
    manifest verifies; bad ranges are refused with a reason."""
    import av

    import node.commands

    monkeypatch.setattr(node.commands, "CHUNK_BYTES", 16 * 1024)  # many chunks for a small clip

    from node.record.verify import verify_clip
    from station.cli import main as station

    node, broker = running
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and node.recorder.health()["segments_closed"] < 3:
        time.sleep(0.2)
    import sqlite3

    db = sqlite3.connect(node.recorder.root / "index.db")
    first, last = db.execute("SELECT min(start_us), max(end_us) FROM segments").fetchone()
    from node.record.export import iso

    args = ["clip", "--port", str(broker.port), "pole-9", "--start", iso(first), "--end", iso(last),
            "--out", str(tmp_path / "post"), "--timeout", "60"]
    assert station(args) == 0, capsys.readouterr()
    (clip,) = (tmp_path / "post").glob("*.mp4")
    assert clip.stat().st_size > 3 * 16 * 1024  # it really came in several chunks
    with av.open(str(clip)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames >= 40  # ≥ 3 segments of 2 s at 10 fps, minus GOP alignment
    from node.record.export import manifest_path

    assert manifest_path(clip).name == clip.name + ".json"  # the one naming rule (issue 8, item 2)
    verdict = verify_clip(clip, manifest_path(clip))  # integrity (this test node has no key)
    assert verdict.ok and verdict.checked >= 3, verdict.problems
    assert station(["clip", "--port", str(broker.port), "pole-9", "--start", "2020-01-01T00:00:00Z",
                    "--end", "2020-01-01T00:01:00Z", "--out", str(tmp_path / "none")]) == 1
    assert "no footage" in capsys.readouterr().err
    assert node.recorder.holds() == []  # issue 8/26: a clip request leaves no lasting hold
    too_long = ask(broker, "clip", {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T02:00:00Z"})
    assert not too_long["ok"] and "at most 30 minutes" in too_long["error"]
