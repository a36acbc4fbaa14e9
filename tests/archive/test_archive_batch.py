"""Bulk ingest: one batch mixing new ids, repeated id+phase, later phases of ids new in the batch
and archived earlier, snapshots on both sides of their event and bad rows is archived exactly as
the same messages taken one per batch — on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime

from sqlalchemy import delete, event, select

from node.clock import FakeClock
from station.archive import open_archive
from station.archive.ingest import Ack, Ingestor
from station.archive.schema import events, heartbeats, snapshots

JPEG = b"\xff\xd8\xff\xe0" + b"y" * 64
END = "2026-11-22T18:11:50Z"


def ev(eid: str, phase: str, node: str = "pole-1", **extra) -> tuple[str, bytes]:
    p = {"id": eid, "kind": "object", "phase": phase, "label": "person", "classes": ["person"],
         "score": 0.7, "box": [0.1, 0.2, 0.3, 0.9], "start": "2026-11-22T18:11:40Z", "end": None,
         "duration_s": 0.0, "snapshot": True, **extra}
    return f"camnode/{node}/event", json.dumps(p).encode()


def hb(utc: str) -> tuple[str, bytes]:
    return "camnode/pole-1/heartbeat", json.dumps({"node_id": "pole-1", "utc": utc, "faults": {}}).encode()


EARLIER = [ev("old1", "start", score=0.4), ev("old2", "end", end=END, score=0.9)]
BATCH = [
    ev("new1", "start"),                                      # new id
    hb("2026-11-22T18:00:00Z"),
    ev("new1", "start"),                                      # repeated id+phase in the batch
    ev("new1", "end", end=END, duration_s=10.0, score=0.8),   # later phase, same batch
    ev("old1", "end", end=END, duration_s=9.0, score=0.95),   # later phase of an archived id
    ev("old1", "start"),                                      # repeated phase of an archived id
    ev("old1", "update", score=0.1, label="car"),             # earlier phase: fills gaps only
    ("camnode/pole-1/event", b"{not json"),                  # bad rows: refused, batch goes on
    ev("bad id/slash", "start"),
    ev("new1", "update", node="pole-2"),                      # another node's id
    ev("new2", "end", end=END, score=0.6),                    # end first, then the start
    ev("new2", "start", score=0.1, future={"x": 1}),          # fills gaps only
    ("camnode/pole-1/snapshot/new3", JPEG),                   # snapshot before its event
    ev("new3", "start"),
    ev("new4", "start"),
    ("camnode/pole-1/snapshot/new4", JPEG),                   # snapshot after its event
    ev("old2", "start", label="car"),                         # earlier phase of an archived end
    hb("2026-11-22T18:00:30Z"), hb("2026-11-22T18:01:00Z"),
    ev("new4", "update", score=0.99),
]


def archived(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["id"]: {k: v for k, v in r.items() if k != "received"}
                for r in conn.execute(select(events)).mappings()}


def run(engine, tmp_path, batches: list[list[tuple[str, bytes]]]) -> tuple[Ingestor, list[Ack]]:
    ing = Ingestor(engine, "camnode", tmp_path / "media",
                   FakeClock(datetime(2026, 11, 22, 18, 20, tzinfo=UTC)))
    ing.apply(EARLIER)
    acks, fresh = [], []
    for b in batches:
        acks += ing.apply(b)
        fresh += ing.fresh
    ing.fresh = fresh
    return ing, acks


def test_a_mixed_batch_archives_as_message_by_message(archive_url, tmp_path):
    engine = open_archive(archive_url)
    try:
        one, one_acks = run(engine, tmp_path, [[m] for m in BATCH])
        expected = archived(engine)
        with engine.begin() as conn:
            for table in (events, snapshots, heartbeats):
                conn.execute(delete(table))
        bulk, bulk_acks = run(engine, tmp_path, [BATCH])
        got = archived(engine)
        with engine.connect() as conn:
            beats = conn.execute(select(heartbeats.c.utc)).scalars().all()
    finally:
        engine.dispose()

    assert got == expected
    assert bulk.stats.as_dict() == one.stats.as_dict()
    assert sorted(map(repr, bulk_acks)) == sorted(map(repr, one_acks))
    assert [f["id"] for f in bulk.fresh] == [f["id"] for f in one.fresh] == ["new1", "new2", "new3", "new4"]

    s = bulk.stats
    assert s.archived == {"event": 2 + 10, "snapshot": 2, "heartbeat": 2}
    assert s.duplicates == 2
    assert s.refused == {"malformed": 1, "bad_field": 1, "foreign_id": 1, "orphan_snapshot": 1}
    # every event message that was not refused is acknowledged, repeats included
    event_acks = [(a.node, a.body["id"], a.body["phase"]) for a in bulk_acks if a.leaf == "event"]
    assert sorted(event_acks) == sorted([
        ("pole-1", "new1", "start"), ("pole-1", "new1", "start"), ("pole-1", "new1", "end"),
        ("pole-1", "old1", "end"), ("pole-1", "old1", "start"), ("pole-1", "old1", "update"),
        ("pole-1", "new2", "end"), ("pole-1", "new2", "start"), ("pole-1", "new3", "start"),
        ("pole-1", "new4", "start"),
        ("pole-1", "old2", "start"), ("pole-1", "new4", "update")])
    sha = hashlib.sha256(JPEG).hexdigest()
    new1, old1, old2 = got["new1"], got["old1"], got["old2"]
    assert (new1["phase"], new1["phases"], new1["messages"], new1["score"]) == ("end", 5, 2, 0.8)
    assert (old1["phase"], old1["phases"], old1["messages"], old1["score"]) == ("end", 7, 3, 0.95)
    assert old1["label"] == "person"
    assert old1["duration_s"] == 9.0 and old1["end"] == datetime(2026, 11, 22, 18, 11, 50)
    assert (old2["phase"], old2["phases"], old2["label"]) == ("end", 5, "person")
    assert (got["new2"]["phase"], got["new2"]["score"]) == ("end", 0.6)
    assert "future" not in got["new2"]["payload"]  # an earlier phase only fills missing columns
    assert got["new3"]["snapshot_sha"] == got["new4"]["snapshot_sha"] == sha
    assert (got["new4"]["phase"], got["new4"]["score"], got["new4"]["phases"]) == ("update", 0.99, 3)
    assert len(beats) == 2


def test_an_id_a_peer_archives_meanwhile_is_merged_into_its_row(archive_url, tmp_path):
    """Two services (a share group) on one archive: the peer archives an id while this service's
    batch is between its SELECT and its INSERT. PostgreSQL: the insert skips it and the messages
    merge into the peer's row. SQLite: the batch's transaction holds the write lock from its
    BEGIN (IMMEDIATE), so the peer waits until it commits, then merges into this one's row."""
    engine = open_archive(archive_url)
    peer_engine = open_archive(archive_url, migrate=False)
    clock = FakeClock(datetime(2026, 11, 22, 18, 20, tzinfo=UTC))
    ing = Ingestor(engine, "camnode", tmp_path / "media", clock)
    peer = Ingestor(peer_engine, "camnode", tmp_path / "media", clock)
    sqlite = engine.dialect.name == "sqlite"
    fired: list[threading.Thread] = []
    peer_msg = [ev("race1", "start", score=0.3)]

    def peer_first(conn, cursor, statement, params, context, executemany) -> None:
        if statement.startswith("INSERT INTO events") and not fired:
            t = threading.Thread(target=peer.apply, args=(peer_msg,), name="peer-ingest")
            fired.append(t)
            t.start()
            t.join(0.5 if sqlite else 15)
            assert t.is_alive() == sqlite  # SQLite: blocked until this batch commits

    event.listen(engine, "before_cursor_execute", peer_first)
    batch = [ev("race1", "end", end=END, score=0.9), ev("race1", "start"), ev("calm1", "start")]
    try:
        acks = ing.apply(batch)
        fired[0].join(15)
        rows = archived(engine)
    finally:
        event.remove(engine, "before_cursor_execute", peer_first)
        engine.dispose()
        peer_engine.dispose()
    assert fired and not fired[0].is_alive()
    assert sorted((a.body["id"], a.body["phase"]) for a in acks) == [
        ("calm1", "start"), ("race1", "end"), ("race1", "start")]
    race = rows["race1"]
    assert (race["phase"], race["phases"], race["messages"], race["score"]) == ("end", 5, 2, 0.9)
    assert ing.stats.duplicates + peer.stats.duplicates == 1
    assert ing.stats.archived["event"] + peer.stats.archived["event"] == 3
    # who archived race1 first: the peer on PostgreSQL, this batch on SQLite
    assert [f["id"] for f in ing.fresh] == (["race1", "calm1"] if sqlite else ["calm1"])
    assert set(rows) == {"race1", "calm1"}
