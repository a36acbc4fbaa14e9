"""The archive on SQLite and on the real PostgreSQL server: migrations, idempotent merging
ingest, refusal of bad input, search."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, insert, select

from node.clock import FakeClock
from station.archive import EventQuery, open_archive, search_events
from station.archive.ingest import Ack, Ingestor
from station.archive.migrate import current, downgrade, head, upgrade
from station.archive.schema import commands, events, heartbeats, metadata, nodes, snapshots, status_changes

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100


def ev(eid: str, phase: str, start: str = "2026-11-22T18:11:40.801Z", **extra) -> bytes:
    p = {"id": eid, "kind": "object", "phase": phase, "label": "person", "classes": ["person"],
         "score": 0.7, "box": [0.1, 0.2, 0.3, 0.9], "start": start, "end": None, "duration_s": 0.0,
         "snapshot": True, **extra}
    return json.dumps(p).encode()


@pytest.fixture
def archive(archive_url, tmp_path):
    engine = open_archive(archive_url)
    clock = FakeClock(datetime(2026, 11, 22, 18, 20, tzinfo=UTC))
    yield Ingestor(engine, "camnode", tmp_path / "media", clock)
    engine.dispose()


def rows(engine, table):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


def test_migrations_build_the_schema_the_code_uses(archive_url):
    engine = open_archive(archive_url)
    try:
        assert current(engine) == head()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        downgrade(engine, "base")
        assert current(engine) is None
        upgrade(engine)
        assert current(engine) == head()
    finally:
        engine.dispose()


def test_event_phases_merge_and_repeat_idempotently(archive):
    a = archive.apply([("camnode/pole-1/event", ev("e1", "start"))])
    assert a == [Ack("pole-1", "event", {"id": "e1", "phase": "start"})]
    archive.apply([("camnode/pole-1/event", ev("e1", "update", score=0.9))])
    archive.apply([("camnode/pole-1/event", ev("e1", "end", end="2026-11-22T18:11:50Z", duration_s=9.2,
                                               score=0.95))])
    # resends (the node did not see the acks) and a late update after the end
    again = archive.apply([("camnode/pole-1/event", ev("e1", "start")),
                           ("camnode/pole-1/event", ev("e1", "end", end="2026-11-22T18:11:50Z")),
                           ("camnode/pole-1/event", ev("e1", "update", score=0.1))])
    assert [x.body["phase"] for x in again] == ["start", "end", "update"]  # acknowledged again
    (row,) = rows(archive.engine, events)
    assert row["phase"] == "end" and row["phases"] == 7
    assert row["score"] == 0.95  # the late update did not overwrite the end
    assert row["end"] == datetime(2026, 11, 22, 18, 11, 50) and row["duration_s"] == 9.2
    assert archive.stats.duplicates == 2


def test_end_before_start_keeps_the_end(archive):
    archive.apply([("camnode/pole-1/event", ev("e2", "end", end="2026-11-22T18:12:00Z", score=0.8))])
    archive.apply([("camnode/pole-1/event", ev("e2", "start", score=0.5))])
    (row,) = rows(archive.engine, events)
    assert row["phase"] == "end" and row["score"] == 0.8 and row["phases"] == 5


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("camnode/pole-1/event", b"{not json", "malformed"),
    ("camnode/pole-1/event", b"[1, 2]", "malformed"),
    ("camnode/pole-1/event", b"\xff\xfe", "malformed"),
    ("camnode/pole-1/event", b"{" + b" " * 70000 + b"}", "oversized"),
    ("camnode/pole-1/event", json.dumps({"id": "x"}).encode(), "bad_field"),
    ("camnode/pole-1/event", ev("e3", "middle"), "bad_field"),
    ("camnode/pole-1/event", ev("bad id/with slash", "start"), "bad_field"),
    ("camnode/pole-1/event", ev("e3", "start", start="yesterday"), "bad_field"),
    ("camnode/pole-1/event", ev("e3", "start", start="2026-11-22T18:00:00"), "bad_field"),
    ("camnode/pole-1/event", ev("e3", "start", score="high"), "bad_field"),
    ("camnode/pole-1/event", ev("e3", "start", appearance={"exit": "sideways"}), "bad_field"),
    # numbers and times that overflow (each stopped the whole archive: its batch retried forever)
    ("camnode/pole-1/event", ev("e3", "start", start="0001-01-01T00:00:00+01:00"), "bad_field"),
    ("camnode/pole-1/event", ev("e3", "start", end="9999-12-31T23:59:59-01:00"), "bad_field"),
    ("camnode/pole-1/event", ev("e3", "start").replace(b'"score": 0.7', b'"score": 1' + b"0" * 400),
     "bad_field"),
    ("camnode/pole-1/event", ev("e3", "start", duration_s=1e300), "bad_field"),
    ("camnode/pole-1/event", ev("e3", "start").replace(b'"score": 0.7', b'"score": Infinity'), "malformed"),
    ("camnode/pole-1/event", ev("e3", "start").replace(b'"score": 0.7', b'"score": 1e999'), "malformed"),
    ("camnode/pole-1/lost", json.dumps({"id": "n1", "count": 2 ** 70}).encode(), "bad_field"),
    ("camnode/pole-1/lost", json.dumps({"id": "n1", "count": -1}).encode(), "bad_field"),
    ("camnode/pole-1/status", json.dumps({"state": "online", "utc": "0001-01-01T00:00:00+01:00"}).encode(),
     "bad_field"),
    ("camnode/pole-1/heartbeat", json.dumps({"node_id": "pole-2", "utc": "2026-11-22T18:00:00Z"}).encode(),
     "foreign_id"),
    ("camnode/pole-1/heartbeat", json.dumps({"utc": 5}).encode(), "bad_field"),
    ("camnode/pole-1/status", json.dumps({"state": "dancing", "utc": "2026-11-22T18:00:00Z"}).encode(),
     "bad_field"),
    ("camnode/pole-1/snapshot/e3", b"GIF89a", "malformed"),
    ("camnode/pole-1/snapshot/e3", b"\xff\xd8" + b"x" * (5 << 20), "oversized"),
    ("camnode/pole-1/whatever", b"{}", "unknown_topic"),
    ("other/pole-1/event", ev("e3", "start"), "bad_topic"),
    ("camnode/bad id!/event", ev("e3", "start"), "bad_topic"),
])
def test_bad_input_is_refused_counted_and_logged_once(archive, caplog, topic, payload, reason):
    before = {t.name: len(rows(archive.engine, t)) for t in (events, heartbeats, status_changes, snapshots)}
    for _ in range(3):
        assert archive.apply([(topic, payload)]) == []
    assert archive.stats.refused[reason] == 3
    assert sum(1 for r in caplog.records if "refused message" in r.getMessage()) == 1
    after = {t.name: len(rows(archive.engine, t)) for t in (events, heartbeats, status_changes, snapshots)}
    assert after == before
    # and the archive still takes good input, in the same batch as bad input
    acks = archive.apply([(topic, payload), ("camnode/pole-1/event", ev("ok1", "start"))])
    assert acks == [Ack("pole-1", "event", {"id": "ok1", "phase": "start"})]


def test_a_message_the_code_did_not_foresee_is_refused_and_the_rest_archived(archive, monkeypatch, caplog):
    """A safety net under validation: whatever one message raises (a bug, here injected), it is
    refused ("internal", its traceback logged once) and the batch's other messages are archived
    and acknowledged; the archive never retries the batch forever."""
    from station.archive import ingest

    real = ingest.event_row

    def buggy(node, p):
        if p.get("id") == "boom":
            raise KeyError("a field the code assumed")
        return real(node, p)

    monkeypatch.setattr(ingest, "event_row", buggy)
    beat = json.dumps({"node_id": "pole-1", "utc": "2026-11-22T18:00:00Z", "faults": {}}).encode()
    batch = [("camnode/pole-1/event", ev("ok-a", "start")), ("camnode/pole-1/heartbeat", beat),
             ("camnode/pole-1/event", ev("boom", "start")), ("camnode/pole-1/event", ev("ok-b", "start"))]
    acks = archive.apply(batch)
    assert [a.body["id"] for a in acks] == ["ok-a", "ok-b"]
    assert archive.stats.refused["internal"] == 1
    # the heartbeat the failed batch had seen is kept on the retry, each counted once
    assert len(rows(archive.engine, heartbeats)) == 1
    assert archive.stats.archived == {"event": 2, "heartbeat": 1}
    assert sorted(r["id"] for r in rows(archive.engine, events)) == ["ok-a", "ok-b"]
    archive.apply(batch)  # redelivered: the good ones merge as duplicates, the bad one refused again
    assert archive.stats.refused["internal"] == 2 and archive.stats.duplicates == 2
    logged = [r for r in caplog.records if "refused message" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info and "KeyError" in logged[0].getMessage()


def test_unknown_fields_are_kept_and_another_nodes_id_refused(archive):
    archive.apply([("camnode/pole-1/event", ev("e4", "start", future_field={"x": 1}))])
    assert rows(archive.engine, events)[0]["payload"]["future_field"] == {"x": 1}
    assert archive.apply([("camnode/pole-2/event", ev("e4", "end", end="2026-11-22T18:13:00Z"))]) == []
    assert archive.apply([("camnode/pole-2/snapshot/e4", JPEG)]) == []
    assert archive.stats.refused["foreign_id"] == 2
    (row,) = rows(archive.engine, events)
    assert row["node"] == "pole-1" and row["phase"] == "start"


def test_snapshot_named_by_content_before_or_after_its_event(archive):
    assert archive.apply([("camnode/pole-1/snapshot/e5", JPEG)]) == [Ack("pole-1", "snapshot", {"id": "e5"})]
    assert archive.stats.refused["orphan_snapshot"] == 1
    archive.apply([("camnode/pole-1/event", ev("e5", "start"))])
    archive.apply([("camnode/pole-1/event", ev("e6", "start"))])
    archive.apply([("camnode/pole-1/snapshot/e6", JPEG), ("camnode/pole-1/snapshot/e6", JPEG)])
    got = {r["id"]: r["snapshot_sha"] for r in rows(archive.engine, events)}
    import hashlib

    sha = hashlib.sha256(JPEG).hexdigest()
    assert got == {"e5": sha, "e6": sha}
    assert archive.snapshot_path(sha).read_bytes() == JPEG
    assert len(rows(archive.engine, snapshots)) == 2


def test_heartbeats_one_per_minute_plus_fault_changes(archive):
    def hb(utc, faults=None):
        return ("camnode/pole-1/heartbeat", json.dumps({"node_id": "pole-1", "utc": utc,
                                                        "faults": faults or {}}).encode())

    archive.apply([hb("2026-11-22T18:00:00Z"), hb("2026-11-22T18:00:10Z"),
                   hb("2026-11-22T18:00:20Z", {"camera": "silent"}),
                   hb("2026-11-22T18:00:30Z", {"camera": "silent"}),
                   hb("2026-11-22T18:00:40Z"), hb("2026-11-22T18:01:00Z"), hb("2026-11-22T18:01:10Z")])
    got = [(r["utc"].second, r["utc"].minute, r["faults"]) for r in rows(archive.engine, heartbeats)]
    assert got == [(0, 0, {}), (20, 0, {"camera": "silent"}), (40, 0, {}), (0, 1, {})]


def test_status_transitions_and_reply_audit(archive):
    online = json.dumps({"state": "online", "utc": "2026-11-22T18:00:00Z", "reason": ""}).encode()
    archive.apply([("camnode/pole-1/status", online), ("camnode/pole-1/status", online)])
    assert [r["state"] for r in rows(archive.engine, status_changes)] == ["online"]
    with archive.engine.begin() as conn:
        conn.execute(insert(commands).values(request="r1", node="pole-1", command="diag", actor="desk",
                                             sent=datetime(2026, 11, 22, 18), args={}))
    archive.apply([("camnode/pole-1/reply/diag", json.dumps({"ok": True, "id": "r1"}).encode()),
                   ("camnode/pole-1/reply/ir", json.dumps({"ok": False, "error": "x"}).encode())])
    got = sorted((r["command"], r["actor"], r["reply"]["ok"]) for r in rows(archive.engine, commands))
    assert got == [("diag", "desk", True), ("ir", "", False)]


def test_search_filters(archive):
    with archive.engine.begin() as conn:
        conn.execute(insert(nodes), [
            {"id": "pole-1", "site": "market", "lat": 52.0, "lon": 13.0, "neighbours": [], "pubkey": "",
             "updated": datetime(2026, 11, 1)},
            {"id": "pole-2", "site": "market", "lat": 52.001, "lon": 13.0, "neighbours": [], "pubkey": "",
             "updated": datetime(2026, 11, 1)},
            {"id": "pole-3", "site": "station", "lat": 52.1, "lon": 13.0, "neighbours": [], "pubkey": "",
             "updated": datetime(2026, 11, 1)}])
    batch = []
    for i in range(30):
        node = f"pole-{i % 3 + 1}"
        label = ("person", "car", "motorcycle")[i % 3 if i % 2 else 0]
        app = {"colours": {"upper": "red" if i % 5 == 0 else "blue", "lower": "black"}} \
            if label == "person" else {"colours": {"body": "red" if i % 4 == 0 else "white"}}
        start = f"2026-11-22T18:{i:02d}:00Z"
        batch.append((f"camnode/{node}/event", ev(f"s{i:02d}", "start", start=start, label=label,
                                                 appearance=app)))
    archive.apply(batch)
    e = archive.engine

    def ids(**kw):
        return [r["id"] for r in search_events(e, EventQuery(**kw))]

    assert len(ids(limit=1000)) == 30
    assert ids(limit=3) == ["s29", "s28", "s27"]  # newest first
    assert ids(limit=2, newest_first=False) == ["s00", "s01"]
    since, until = datetime(2026, 11, 22, 18, 10), datetime(2026, 11, 22, 18, 12)
    assert ids(since=since, until=until) == ["s11", "s10"]
    assert set(ids(nodes=("pole-1",))) == {f"s{i:02d}" for i in range(0, 30, 3)}
    assert set(ids(site="market")) == {f"s{i:02d}" for i in range(30) if i % 3 != 2}
    assert set(ids(near=(52.0, 13.0), radius_m=200)) == {f"s{i:02d}" for i in range(30) if i % 3 != 2}
    assert set(ids(near=(52.0, 13.0), radius_m=50)) == {f"s{i:02d}" for i in range(0, 30, 3)}
    assert ids(site="nowhere") == []
    persons = {f"s{i:02d}" for i in range(30) if not i % 2 or i % 3 == 0}
    assert set(ids(label="person", limit=100)) == persons
    red = {f"s{i:02d}" for i in range(30) if (f"s{i:02d}" in persons and i % 5 == 0)
           or (f"s{i:02d}" not in persons and i % 4 == 0)}
    assert set(ids(colour="red")) == red
    assert set(ids(colour="red", label="person")) == {x for x in red if x in persons}
    (first,) = search_events(e, EventQuery(nodes=("pole-1",), limit=1, newest_first=False))
    assert first["start"] == "2026-11-22T18:00:00.000Z" and first["colour_upper"] == "red"
    with e.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 30


def test_lost_notices_are_archived_once(archive):
    from station.archive.schema import lost_notices

    notice = json.dumps({"id": "lost-3-8", "count": 6, "events": ["ev3"], "phase": "lost"}).encode()
    archive.apply([("camnode/pole-1/lost", notice), ("camnode/pole-1/lost", notice),
                   ("camnode/pole-1/lost", b'{"count": "many"}')])
    (row,) = rows(archive.engine, lost_notices)
    assert row["count"] == 6 and row["payload"]["events"] == ["ev3"]
    assert archive.stats.refused["bad_field"] == 1


def test_an_archive_of_the_first_schema_upgrades_with_its_rows(archive_url):
    from sqlalchemy import create_engine

    from station.archive.db import normalise_url

    engine = create_engine(normalise_url(archive_url))
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(insert(events).values(id="old", node="pole-1", kind="motion", label="", phase="end",
                                               phases=5, start=datetime(2026, 1, 1), payload={}, messages=2,
                                               snapshot=False, received=datetime(2026, 1, 1)))
    finally:
        engine.dispose()
    engine = open_archive(archive_url)  # what serve does at start
    try:
        assert current(engine) == head() != "0001"
        assert [r["id"] for r in rows(engine, events)] == ["old"]
    finally:
        engine.dispose()


def test_console_tables_an_earlier_console_made_itself_are_adopted_with_their_rows(archive_url):
    """Before revision 0005 the console ran ``create_all`` for its tables beside an archive at
    0004: the upgrade keeps those tables and their rows, and the schema then equals the code's."""
    from sqlalchemy import MetaData, create_engine

    from station.archive.db import normalise_url
    from station.archive.schema import console_users

    engine = create_engine(normalise_url(archive_url))
    try:
        upgrade(engine, "0004")
        earlier = MetaData()  # the earlier console's own MetaData, as it created its tables
        for table in metadata.sorted_tables:
            if table.name.startswith("console_"):
                table.to_metadata(earlier)
        earlier.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(console_users).values(
                username="admin", display_name="", role="admin", password_hash="x", active=True,
                session_epoch=0, created_utc=datetime(2026, 11, 1, tzinfo=UTC)))
    finally:
        engine.dispose()
    engine = open_archive(archive_url)  # what the console and serve do at start
    try:
        assert current(engine) == head()
        assert [r["username"] for r in rows(engine, console_users)] == ["admin"]
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        downgrade(engine, "0004")  # and back: the console's tables go with the revision
        from sqlalchemy import inspect

        assert not [t for t in inspect(engine).get_table_names() if t.startswith("console_")]
    finally:
        engine.dispose()


def test_services_starting_together_on_one_new_archive_all_open_it(archive_url):
    """Two serve instances started at once: one migrates, the others wait (no 'locked')."""
    import subprocess
    import sys

    code = "import sys; from station.archive import open_archive; open_archive(sys.argv[1]).dispose()"
    procs = [subprocess.Popen([sys.executable, "-c", code, archive_url], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
