"""Technician commands over a real broker: answers, and clear errors for bad input."""

from __future__ import annotations

import json
import threading
import time

import pytest

from node.app import Node
from station.cli import main as station
from station.console import request
from tests.integration.test_node_inprocess import small_config


@pytest.fixture
def running(tmp_path, broker):
    node = Node(small_config(tmp_path, broker.port))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    assert node.link.wait_connected(10)
    time.sleep(0.3)  # subscription to cmd/# in place
    yield node, broker
    stop.set()
    th.join(30)


def ask(broker, name, args=None):
    return request(broker.host, broker.port, "camnode", "pole-9", name, args, timeout_s=10)


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
    # and the node kept recording through all of it
    before = node.pipeline.counters.frames_encoded
    time.sleep(0.5)
    assert node.pipeline.counters.frames_encoded > before


def test_hold_validates_times(running):
    _, broker = running
    bad = ask(broker, "hold", {"start": "yesterday", "end": "2026-01-01T00:00:00Z"})
    assert not bad["ok"] and "ISO 8601" in bad["error"]
    naive = ask(broker, "hold", {"start": "2026-01-01T00:00:00", "end": "2026-01-01T01:00:00Z"})
    assert not naive["ok"] and "time zone" in naive["error"]
    ok = ask(broker, "hold", {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                              "name": "case-17"})
    assert ok["ok"] and ok["result"]["hold"] == "case-17"
