"""End-to-end delivery with real mosquitto, real ``camnode run`` processes and the real
``camnode-station serve``, on SQLite and on the PostgreSQL server: every event reaches the
archive exactly once, and the node's outbox lets a row go only on the archive's acknowledgement.
"""

from __future__ import annotations

import json
import signal

from sqlalchemy import select

from station.archive import open_archive
from station.archive.ingest import PHASE_BIT
from station.archive.schema import events
from tests.nodeproc import NodeProcess, write_config
from tests.stationproc import ServeProcess, events_cli, outbox_rows, wait_until

NODE_EXTRA = "ack_resend_s = 2.0\n"  # [mqtt]: resend unacknowledged rows soon (the test is short)


def outbox_events(storage) -> list[dict]:
    return [json.loads(p) for topic, p in outbox_rows(storage) if topic.endswith("/event")]


def archived_phases(url: str) -> dict[str, int]:
    engine = open_archive(url, migrate=False)
    try:
        with engine.connect() as conn:
            return {r.id: r.phases for r in conn.execute(select(events.c.id, events.c.phases))}
    finally:
        engine.dispose()


def assert_exactly_once(url: str, live, storage) -> None:
    """One row per event id; every (id, phase) the node sent and no longer holds is archived;
    nothing archived that the node did not send. (The node keeps running: compare what the
    subscriber saw with what left the outbox.)"""
    rows = events_cli(url)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "an event archived twice"
    assert {"id", "node", "kind", "label", "phase", "start"} <= set(rows[0])
    assert {r["node"] for r in rows} == {"pole-7"}
    got = archived_phases(url)
    assert wait_until(lambda: set(got) <= {e["id"] for e in live.json("event")}, 10), "archived, never sent"
    # sent => archived, read in the order things happen (seen, then left the outbox, then in the
    # archive): an event sent and acknowledged after the archive's snapshot above is not missed
    seen = live.json("event")
    held = {(e["id"], e["phase"]) for e in outbox_events(storage)}
    after = archived_phases(url)
    for e in seen:
        if (e["id"], e["phase"]) not in held:
            assert after.get(e["id"], 0) & PHASE_BIT[e["phase"]], f"{e['id']} {e['phase']} not archived"


def test_events_raised_while_serve_is_away_are_archived_on_its_return(
        archive_url, broker, tmp_path, subscriber_factory):
    serve = ServeProcess(broker.port, archive_url, tmp_path / "serve.log")
    try:
        assert serve.wait_log("subscribed (QoS 1)"), serve.log()
    finally:
        assert serve.stop() == 0
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-7/event")
    storage = tmp_path / "rec"
    node = NodeProcess(write_config(tmp_path / "node.toml", port=broker.port, storage=storage,
                                    extra=NODE_EXTRA), tmp_path / "node.log")
    serve2 = None
    try:
        # the broker took a whole event (start and end, PUBACKed); nobody archived it: it stays
        assert wait_until(lambda: any(e["phase"] == "end" for e in live.json("event")), 60), node.log()
        first = live.json("event")[0]
        held = outbox_events(storage)
        assert any(e["id"] == first["id"] and e["phase"] == "start" for e in held)
        serve2 = ServeProcess(broker.port, archive_url, tmp_path / "serve.log")
        # the broker kept the service's session: the queued events arrive, are archived, acked
        assert wait_until(lambda: first["id"] in archived_phases(archive_url), 30), serve2.log()
        assert wait_until(lambda: not outbox_rows(storage), 40), outbox_rows(storage)
        assert_exactly_once(archive_url, live, storage)
        assert "session resumed" in serve2.log()
    finally:
        node.close()
        if serve2 is not None:
            assert serve2.stop() == 0


def test_events_raised_while_the_broker_is_down_survive_a_node_restart(
        archive_url, broker, tmp_path):
    serve = ServeProcess(broker.port, archive_url, tmp_path / "serve.log")
    storage = tmp_path / "rec"
    config = write_config(tmp_path / "node.toml", port=broker.port, storage=storage, extra=NODE_EXTRA)
    node = NodeProcess(config, tmp_path / "node1.log")
    node2 = None
    try:
        assert serve.wait_log("subscribed (QoS 1)"), serve.log()
        assert wait_until(lambda: archived_phases(archive_url), 60), node.log()
        before = set(archived_phases(archive_url))
        broker.stop()  # no persistence: whatever the broker held is gone
        assert wait_until(lambda: any(e["id"] not in before for e in outbox_events(storage)), 60)
        assert node.signal(signal.SIGTERM) == 0
        first_life = outbox_events(storage)
        node2 = NodeProcess(config, tmp_path / "node2.log")  # same storage, broker still down
        old = {e["id"] for e in first_life}
        assert wait_until(lambda: any(e["id"] not in old and e["id"] not in before
                                      for e in outbox_events(storage)), 60), node2.log()
        queued = outbox_events(storage)
        broker.start()
        assert wait_until(lambda: not outbox_rows(storage), 60), (outbox_rows(storage), serve.log()[-3000:])
        got = archived_phases(archive_url)
        for e in first_life + queued:
            assert got.get(e["id"], 0) & PHASE_BIT[e["phase"]], f"{e['id']} {e['phase']} lost"
        rows = events_cli(archive_url)
        assert len({r["id"] for r in rows}) == len(rows)
    finally:
        node.close()
        if node2 is not None:
            node2.close()
        serve.stop()
