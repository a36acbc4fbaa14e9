"""Events raised while the broker is down reach the station later, even across a restart."""

from __future__ import annotations

import json
import threading
import time

from node.app import Node
from node.localbroker import LocalBroker, free_port
from tests.integration.test_node_inprocess import small_config


def test_event_survives_outage_and_restart(tmp_path, subscriber_factory, station_factory):
    port = free_port()
    cfg = small_config(tmp_path, port)
    node = Node(cfg)  # the demo scene: a walker enters at 3 s → a motion event
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(node.outbox) == 0:
            time.sleep(0.1)
        queued = [json.loads(p) for _, _, p, _ in node.outbox.pending()]
        assert queued and queued[0]["phase"] == "start", "no event queued while offline"
    finally:
        stop.set()
        th.join(30)
    event_id = queued[0]["id"]
    with LocalBroker(port) as broker:
        live = subscriber_factory(broker.host, broker.port, "camnode/pole-9/event")
        station_factory(broker.port)
        again = Node(small_config(tmp_path, port))  # same storage: same outbox
        stop2 = threading.Event()
        th2 = threading.Thread(target=again.run, args=(stop2,))
        th2.start()
        try:
            assert live.wait_for(lambda s: any(e["id"] == event_id for e in s.json("event")), 20)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and again.link.health().get("outbox"):
                time.sleep(0.1)
            assert again.link.health()["outbox"] == 0  # rows the archive acknowledged are gone
        finally:
            stop2.set()
            th2.join(30)


def test_failing_outbox_never_kills_the_link(tmp_path, subscriber_factory, broker, station_factory):
    """A full card makes SQLite fail inside paho's callback: the link must live on."""
    import sqlite3

    node = Node(small_config(tmp_path, broker.port))
    node.start()
    try:
        assert node.link.wait_connected(10)
        live = subscriber_factory(broker.host, broker.port, "camnode/pole-9/event")
        station = station_factory(broker.port)

        def full(*_args):
            raise sqlite3.OperationalError("database or disk is full")

        node.outbox.acknowledge = full  # the archive's acknowledgement arrives on paho's thread
        node.link.send_durable(node.link.topics.event, {"id": "e1", "phase": "start", "kind": "motion",
                                                              "start": "2026-11-22T18:00:00.000Z"})
        assert live.wait_for(lambda s: s.json("event"), 10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "disk is full" not in (node.link.last_error or ""):
            time.sleep(0.05)
        assert station.acks_sent >= 1
        assert "disk is full" in node.link.last_error
        # the network thread is alive: a broker restart is survived
        broker.stop()
        broker.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and node.link.connects < 2:
            time.sleep(0.1)
        assert node.link.connects >= 2 and node.link.connected
    finally:
        node.stop()


def test_link_drop_delivers_queued_events_once(tmp_path, subscriber_factory, broker, station_factory):
    """Events queued while the node's connection is down arrive after it comes back, once each."""
    import socket

    node = Node(small_config(tmp_path, broker.port))
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-9/event")
    station_factory(broker.port)
    node.start()
    try:
        assert node.link.wait_connected(10)
        node.link._client.socket().shutdown(socket.SHUT_RDWR)  # the network drops under the node
        deadline = time.monotonic() + 10
        while node.link.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not node.link.connected
        for i in range(5):
            node.link.send_durable(node.link.topics.event, {"id": f"e{i}", "phase": "start",
                                                                  "kind": "motion",
                                                                  "start": "2026-11-22T18:00:00.000Z"})

        def ours(s) -> list[str]:
            return [e["id"] for e in s.json("event") if e["id"].startswith("e")]

        assert live.wait_for(lambda s: len(set(ours(s))) == 5, 20)
        deadline = time.monotonic() + 10
        while node.link.health()["outbox"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node.link.health()["outbox"] == 0
        assert sorted(ours(live)) == [f"e{i}" for i in range(5)]  # none twice
    finally:
        node.stop()
