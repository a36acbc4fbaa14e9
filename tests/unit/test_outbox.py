"""The durable outbox: order, bounds, deletion on acknowledgement, corruption."""

from __future__ import annotations

import json

from node.clock import FakeClock
from node.link.outbox import Outbox


def test_order_done_and_restart(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ids = [ob.put("t/a", f"m{i}".encode()) for i in range(3)]
    assert [r[2] for r in ob.pending()] == [b"m0", b"m1", b"m2"]
    assert [r[0] for r in ob.pending(exclude={ids[0]})] == ids[1:]
    ob.done(ids[1])
    ob.close()
    again = Outbox(tmp_path / "o.sqlite")  # a restart keeps what was not acknowledged
    assert [r[2] for r in again.pending()] == [b"m0", b"m2"]


def test_bounded_drops_oldest(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_rows=3, max_bytes=1000)
    for i in range(5):
        ob.put("t", bytes([i]) * 10)
    assert len(ob) == 3 and ob.dropped == 2
    assert ob.pending()[0][2] == bytes([2]) * 10
    ob.put("t", b"x" * 995)  # over the byte cap: oldest go first
    assert len(ob) == 1 and ob.pending()[0][2] == b"x" * 995


def test_corrupt_file_is_set_aside(tmp_path):
    p = tmp_path / "o.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    ob = Outbox(p)
    assert len(ob) == 0
    assert (tmp_path / "o.corrupt").exists()


def test_archive_acknowledgement_deletes_by_key_up_to_what_was_sent(tmp_path):
    from node.link.topics import Topics, ack_keys

    tp = Topics("camnode", "pole-1")
    ob = Outbox(tmp_path / "o.sqlite")

    def put(eid, phase):
        data = f'{{"id": "{eid}", "phase": "{phase}"}}'.encode()
        return ob.put(tp.event, data, 1, tp.ack_key(tp.event, data))

    a, b = put("e1", "start"), put("e1", "update")
    c = put("e1", "update")  # a newer update the archive has not seen yet
    snap = ob.put(tp.snapshot("e1"), b"\xff\xd8", 1, tp.ack_key(tp.snapshot("e1"), b""))
    assert ob.key_of(snap) == "snapshot/e1" and ob.key_of(a) == "event/e1/start"
    keys = ack_keys("event", {"acks": [{"id": "e1", "phase": "start"}, {"id": "e1", "phase": "update"},
                                       {"id": 5}, "junk"]})
    assert keys == ["event/e1/start", "event/e1/update"]
    assert ob.acknowledge(keys[0]) == [a]
    assert ob.acknowledge(keys[1], upto=b) == [b]
    assert [r[0] for r in ob.pending()] == [c, snap]
    assert ob.acknowledge(*ack_keys("snapshot", {"id": "e1"})) == [snap]
    assert ack_keys("event", {"id": "e1"}) == []  # no phase: names nothing


def test_outbox_of_an_older_node_gains_the_key_column(tmp_path):
    import sqlite3

    p = tmp_path / "o.sqlite"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
               "payload BLOB NOT NULL, qos INTEGER NOT NULL)")
    db.execute("INSERT INTO outbox (topic, payload, qos) VALUES ('t', x'00', 1)")
    db.commit()
    db.close()
    ob = Outbox(p)
    assert len(ob) == 1 and ob.key_of(ob.pending()[0][0]) is None


# -- bounds that say what they dropped (issue 8, item 25) ----------------------------------

def _event(i: int) -> bytes:
    return json.dumps({"id": f"ev{i}", "phase": "start"}).encode()


def test_overflow_queues_a_lost_notice_naming_the_dropped_events(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_rows=3, lost_topic="camnode/p/lost", clock=FakeClock())
    ids = [ob.put("camnode/p/event", _event(i)) for i in range(5)]
    ob.put("camnode/p/snapshot/ev5", b"\xff\xd8jpeg")
    rows = ob.pending()
    kinds = [r[1] for r in rows]
    assert kinds.count("camnode/p/lost") == 1  # one notice, merged, not one per drop
    notice = json.loads(next(r[2] for r in rows if r[1] == "camnode/p/lost"))
    assert notice["count"] == 3 and notice["reasons"] == ["full"]
    assert (notice["first_seq"], notice["last_seq"]) == (ids[0], ids[2])
    assert notice["events"] == ["ev0", "ev1", "ev2"] and notice["dropped_total"] == 3
    assert notice["id"] == f"lost-{ids[0]}-{ids[2]}" and notice["phase"] == "lost"
    kept = [json.loads(r[2])["id"] for r in rows if r[1].endswith("/event")]
    assert kept == ["ev3", "ev4"]


def test_drop_count_survives_a_restart(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_rows=10, lost_topic="t/lost")
    for i in range(40):
        ob.put("t/event", _event(i))
    assert ob.dropped == 30
    ob.close()  # a crash or restart: the count is on the card, not in memory
    again = Outbox(tmp_path / "o.sqlite", max_rows=10, lost_topic="t/lost")
    assert again.dropped == 30
    again.put("t/event", _event(99))
    assert again.dropped == 31
    notice = json.loads(next(r[2] for r in again.pending(100) if r[1] == "t/lost"))
    assert notice["count"] == 31 and notice["dropped_total"] == 31


def test_rows_older_than_the_age_limit_become_a_lost_notice(tmp_path):
    clock = FakeClock()
    ob = Outbox(tmp_path / "o.sqlite", max_age_s=3600, lost_topic="t/lost", clock=clock)
    ob.put("t/event", _event(1))
    clock.advance(1800)
    ob.put("t/event", _event(2))
    clock.advance(1801)  # ev1 is now 3601 s old, ev2 1801 s
    rows = ob.claim()
    assert [r[1] for r in rows] == ["t/event", "t/lost"]
    assert json.loads(rows[0][2])["id"] == "ev2"
    notice = json.loads(rows[1][2])
    assert notice["reasons"] == ["age"] and notice["events"] == ["ev1"]
    assert notice["first_queued"] == "2026-01-01T00:00:00.000Z"


def test_rows_being_sent_are_never_claimed_twice_nor_dropped(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_rows=2, lost_topic="t/lost")
    a = ob.put("t/event", _event(1))
    first = ob.claim(1)
    assert [r[0] for r in first] == [a]
    assert a not in [r[0] for r in ob.claim()]  # in flight: not handed out again
    for i in range(2, 5):
        ob.put("t/event", _event(i))
    assert a in [r[0] for r in ob.pending()]  # in flight rows are not the ones dropped
    ob.release([a])
    assert a in [r[0] for r in ob.claim()]
    ob.done(a)
    assert a not in [r[0] for r in ob.pending()]
    assert ob.in_flight() == len(ob.pending())  # what remains was claimed above


def test_settings_reach_the_outbox(tmp_path):
    from node.app import Node
    from node.config import config_from_dict

    cfg = config_from_dict({"storage": {"path": str(tmp_path)},
                            "mqtt": {"outbox_max_rows": 20, "outbox_max_mb": 2, "outbox_max_age_h": 12}})
    node = Node(cfg)
    try:
        assert (node.outbox.max_rows, node.outbox.max_bytes, node.outbox.max_age_s) == (20, 2_000_000, 43200)
        assert node.outbox.lost_topic == node.link.topics.lost
    finally:
        node.outbox.close()
