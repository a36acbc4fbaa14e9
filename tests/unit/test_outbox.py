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
