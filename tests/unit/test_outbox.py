"""The durable outbox: order, bounds, deletion on acknowledgement, corruption."""

from __future__ import annotations

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
