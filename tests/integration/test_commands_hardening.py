"""Commands that are refused, odd or retained get a clear reply and change nothing; the card's
problems are named (issue 8, items 12, 14, 15, 24, 29). Real broker, real node."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time

import pytest

from node.app import Node
from node.logs import RepeatLimit
from station.command import request
from station.connect import Connection
from tests.integration.test_node_inprocess import small_config


@pytest.fixture
def node_run(tmp_path, broker):
    """A node running in its own thread: (node, broker, that thread)."""
    node = Node(small_config(tmp_path, broker.port))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,), name="node-run")
    th.start()
    assert node.link.wait_connected(10) and node.link.subscribed.wait(10)
    yield node, broker, th
    stop.set()
    th.join(30)


@pytest.fixture
def running(node_run):
    node, broker, _ = node_run
    return node, broker


def ask(broker, name, args=None):
    return request(Connection(broker.host, broker.port), "pole-9", name, args, timeout_s=10)


def test_a_clip_of_a_range_without_footage_is_an_answer_not_a_fault(running, subscriber_factory):
    node, broker = running
    beats = subscriber_factory(broker.host, broker.port, "camnode/pole-9/heartbeat")
    r = ask(broker, "clip", {"start": "2020-01-01T00:00:00Z", "end": "2020-01-01T00:01:00Z"})
    assert not r["ok"] and "no footage between" in r["error"]
    n = len(beats.json("heartbeat"))
    assert beats.wait_for(lambda s: len(s.json("heartbeat")) >= n + 2, 10)
    assert "clip" not in beats.json("heartbeat")[-1]["faults"]  # no lasting fault, no fault LED
    assert node.recorder.holds() == []  # and no hold left behind


def test_an_override_longer_than_allowed_is_refused_not_cut(running):
    node, broker = running
    r = ask(broker, "ir", {"mode": "night", "minutes": 120})
    assert not r["ok"] and "(0, 60]" in r["error"]
    assert node.daynight.state.force is None  # nothing changed
    ok = ask(broker, "ir", {"mode": "night", "minutes": 60})
    assert ok["ok"] and 3590 <= ok["result"]["override_left_s"] <= 3600


def test_retained_commands_never_run_again_on_reconnect(running, subscriber_factory):
    node, broker = running
    replies = subscriber_factory(broker.host, broker.port, "camnode/pole-9/reply/ir")
    pub = subscriber_factory(broker.host, broker.port, "camnode/none")
    # published retained while the node is connected: the broker forwards it once, live
    pub.client.publish("camnode/pole-9/cmd/ir", json.dumps({"mode": "night"}), qos=1, retain=True)
    assert replies.wait_for(lambda s: s.json("reply/ir"), 10)
    assert replies.json("reply/ir")[0]["ok"] and node.daynight.state.force == "night"
    assert ask(broker, "ir", {"mode": "auto"})["ok"] and node.daynight.state.force is None
    for attempt in range(3):  # three reconnects: the broker hands the retained command back each time
        before = node.link.connects
        node.link._client.socket().shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 20
        while node.link.connects == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.link.connects > before
        assert replies.wait_for(lambda s, k=attempt: len(s.json("reply/ir")) >= 3 + k, 10)
        last = replies.json("reply/ir")[-1]
        assert not last["ok"] and "retained command ignored" in last["error"]
        assert node.daynight.state.force is None  # not run again
    pub.client.publish("camnode/pole-9/cmd/ir", b"", qos=1, retain=True)  # cleared


def test_odd_input_gets_a_reason_never_an_internal_error(running, subscriber_factory, caplog):
    _node, broker = running
    replies = subscriber_factory(broker.host, broker.port, "camnode/pole-9/reply/#")
    deep = b'{"mode": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    replies.client.publish("camnode/pole-9/cmd/ir", deep, qos=1)
    assert replies.wait_for(lambda s: s.json("reply/ir"), 10)
    assert "nests deeper than 8 levels" in replies.json("reply/ir")[-1]["error"]
    for start in ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"):
        r = ask(broker, "hold", {"start": start, "end": "2026-01-01T00:00:00Z", "owner": "x"})
        assert not r["ok"] and "out of range" in r["error"], r
    r = ask(broker, "ir", {"mode": "night", "minutes": 1e308})
    assert not r["ok"] and "minutes" in r["error"]
    texts = [json.dumps(m) for m in replies.json("reply/")]
    assert not any("internal error" in t for t in texts), texts
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("node.link"))


def test_repeated_log_lines_are_limited():
    limit = RepeatLimit(burst=5, window_s=60.0)

    def rec(t: float, msg: str = "command %s rejected: %s") -> logging.LogRecord:
        r = logging.LogRecord("node.link.router", logging.WARNING, __file__, 1, msg, ("ir", "x"), None)
        r.created = t
        return r

    passed = [limit.filter(rec(t * 0.01)) for t in range(1000)]  # a fuzz run: 1000 in 10 s
    assert sum(passed) == 5
    assert limit.filter(rec(0.5, "another message"))  # other kinds are not held back
    summary = rec(61.0)
    assert limit.filter(summary) and "[995 more like this suppressed]" in summary.getMessage()


def test_a_hold_on_a_read_only_card_says_so_and_is_a_fault_until_the_card_works(tmp_path, broker):
    card = tmp_path / "card"
    card.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(card)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (tests run as root): {r.stderr.strip()}")
    node = Node(small_config(card, broker.port))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,), name="node-run")
    th.start()
    try:
        assert node.link.wait_connected(10) and node.link.subscribed.wait(10)
        # the card turns read-only under the running node (a kernel remount after I/O errors):
        # a read-only bind mount over it makes every new open fail with EROFS
        subprocess.run(["mount", "--bind", str(card), str(card)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(card)], check=True)
        now = node.clock.utc().replace(microsecond=0)
        got = ask(broker, "hold", {"start": (now.replace(second=0)).isoformat(),
                                   "end": now.isoformat(), "owner": "Officer Lan"})
        assert not got["ok"] and got["error"].startswith("storage is read-only"), got
        assert "internal error" not in got["error"]
        assert "storage" in node.faults.snapshot()  # kept in faults (the heartbeat's and the LED's)
        assert node.faults.snapshot()["storage"].startswith("storage is read-only")
        # writable again (the remount undone): the next command works and the fault ends with it
        subprocess.run(["umount", str(card)], check=True)  # the read-only bind mount
        again = ask(broker, "hold", {"start": (now.replace(second=0)).isoformat(),
                                     "end": now.isoformat(), "owner": "Officer Lan"})
        assert again["ok"], again
        assert "storage" not in node.faults.snapshot()
    finally:
        stop.set()
        th.join(30)
        subprocess.run(["umount", "-l", str(card)], check=False)  # the bind mount
        subprocess.run(["umount", "-l", str(card)], check=False)  # the tmpfs


def test_restart_is_a_clean_stop_that_systemd_turns_into_a_restart(node_run, subscriber_factory):
    node, broker, node_thread = node_run
    status = subscriber_factory(broker.host, broker.port, "camnode/pole-9/status")
    bad = ask(broker, "restart", {"reason": 7})
    assert not bad["ok"] and "reason must be a string" in bad["error"]
    assert ask(broker, "restart", {"bogus": 1})["ok"] is False  # unknown arguments refused
    r = ask(broker, "restart", {"reason": "desk-1: picture frozen"})
    assert r["ok"] and r["result"] == {"restarting": True, "reason": "desk-1: picture frozen"}
    # the run ends by itself (no stop from the test): last segment closed, offline published
    # (the thread is the fixture's: looked up by name it may already have ended and be gone)
    node_thread.join(30)
    assert not node_thread.is_alive()
    assert status.wait_for(lambda s: any(m.get("state") == "offline" and m.get("reason") == "shutdown"
                                         for m in s.json("status")), 10)
    assert node.recorder.health()["closed"] is True and node.recorder.health()["current_segment"] is None
