"""Under load each durable event reaches the broker exactly once per connection (issue 8/22)."""

from __future__ import annotations

import collections
import json
import threading
import time

from node.clock import SystemClock
from node.link.mqtt import MqttLink
from node.link.outbox import Outbox

PRODUCERS, PER_PRODUCER = 4, 250


def test_each_event_published_once_under_load(tmp_path, broker, subscriber_factory, station_factory):
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-load/event")
    station_factory(broker.port)  # the archive whose acknowledgements empty the outbox
    link = MqttLink(host=broker.host, port=broker.port, node_id="pole-load", prefix="camnode",
                    clock=SystemClock(), outbox=Outbox(tmp_path / "outbox.sqlite"))
    link.start()
    try:
        assert link.wait_connected(10)
        go = threading.Event()

        def produce(n: int) -> None:
            go.wait()
            for i in range(PER_PRODUCER):
                link.send_durable(link.topics.event, {"id": f"p{n}-{i}", "phase": "start", "kind": "motion",
                                                      "start": "2026-11-22T18:00:00.000Z"})

        workers = [threading.Thread(target=produce, args=(n,), name=f"producer-{n}")
                   for n in range(PRODUCERS)]
        for w in workers:
            w.start()
        go.set()
        for w in workers:
            w.join(60)
        total = PRODUCERS * PER_PRODUCER
        assert live.wait_for(lambda s: len({e["id"] for e in s.json("event")}) == total, 60)
        deadline = time.monotonic() + 20
        while len(link.outbox) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(link.outbox) == 0
        time.sleep(0.5)  # any late resend would arrive now
        counts = collections.Counter(json.loads(p)["id"] for _, p, _ in live.messages)
        twice = {k: v for k, v in counts.items() if v > 1}
        assert not twice, f"{len(twice)} of {total} events published more than once"
        assert link.published == total
    finally:
        link.close()


def test_overflow_during_outage_reaches_the_station_as_a_lost_notice(tmp_path, subscriber_factory):
    """Issue 8/25: the station learns which events a long outage cost, after a restart too."""
    from node.localbroker import LocalBroker, free_port

    port = free_port()
    link = MqttLink(host="127.0.0.1", port=port, node_id="pole-out", prefix="camnode",
                    clock=SystemClock(), outbox=Outbox(tmp_path / "o.sqlite", max_rows=4,
                                                       lost_topic="camnode/pole-out/lost"))
    for i in range(10):  # no broker yet: everything is queued, the oldest six dropped
        link.send_durable(link.topics.event, {"id": f"ev{i}", "phase": "start"})
    link.outbox.close()  # the node restarts before the link comes back
    with LocalBroker(port) as broker:
        live = subscriber_factory(broker.host, broker.port, "camnode/pole-out/#")
        again = MqttLink(host="127.0.0.1", port=port, node_id="pole-out", prefix="camnode",
                         clock=SystemClock(), outbox=Outbox(tmp_path / "o.sqlite", max_rows=4,
                                                            lost_topic="camnode/pole-out/lost"))
        again.start()
        try:
            assert live.wait_for(lambda s: s.json("lost") and len(s.json("event")) == 4, 20)
            notice = live.json("lost")[0]
            assert notice["events"] == [f"ev{i}" for i in range(6)]
            assert notice["count"] == 6 and notice["dropped_total"] == 6
            assert [e["id"] for e in live.json("event")] == [f"ev{i}" for i in range(6, 10)]
            assert again.health()["outbox_dropped"] == 6
        finally:
            again.close()
