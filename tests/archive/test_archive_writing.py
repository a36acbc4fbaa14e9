"""A transaction that reads, then writes, beside another writer (SQLite's WAL).

The archive's writers (the ``serve`` ingest, the console, the inventory, the rules) share one
SQLite file. A deferred transaction whose read snapshot another writer overtakes cannot upgrade
to a write: SQLite answers "database is locked" at once, whatever ``busy_timeout`` says (seen as
a flaky evidence test: the test's inventory ``upsert`` beside a busy ``serve``).
:func:`~station.archive.db.writing` begins IMMEDIATE so the second writer waits its turn instead.
"""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from station.archive.db import open_archive, writing
from station.archive.inventory import upsert
from station.archive.schema import nodes

NOW = datetime(2026, 11, 29, 12, 0)


def _race(engine, begin) -> None:
    """Read in one transaction; another connection commits a write; then write in the first."""
    other_wrote = threading.Event()

    def other() -> None:
        with writing(engine) as conn:
            conn.execute(sa.insert(nodes).values(id="pole-2", updated=NOW))
        other_wrote.set()

    with begin(engine) as conn:
        conn.execute(sa.select(nodes)).fetchall()
        t = threading.Thread(target=other, name="other-writer")
        t.start()
        # an immediate transaction holds the write lock: the other waits (busy_timeout) until this
        # one commits; a deferred one lets it commit now
        other_wrote.wait(1.0)
        conn.execute(sa.insert(nodes).values(id="pole-1", updated=NOW))
    t.join(15)
    assert other_wrote.is_set()


def test_a_read_then_write_waits_for_the_other_writer(tmp_path):
    engine = open_archive(f"sqlite:///{tmp_path / 'a.db'}")
    _race(engine, writing)
    with engine.connect() as conn:
        assert sorted(r.id for r in conn.execute(sa.select(nodes.c.id))) == ["pole-1", "pole-2"]


def test_a_deferred_read_then_write_beside_a_writer_is_what_fails(tmp_path):
    """The failure :func:`writing` avoids, shown on the same engine with ``engine.begin()``."""
    engine = open_archive(f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(OperationalError, match="locked"):
        _race(engine, lambda e: e.begin())


def test_inventory_upsert_beside_a_busy_writer(tmp_path):
    """The flaky case itself: inventory upserts while another thread writes all the time (a
    couple of milliseconds between its transactions, as an ingest under load: with none at all
    SQLite's busy handler, which polls, can lose every race to it for longer than busy_timeout)."""
    engine = open_archive(f"sqlite:///{tmp_path / 'a.db'}")
    stop = threading.Event()
    busy_started = threading.Event()
    writes = 0

    def busy() -> None:
        nonlocal writes
        while not stop.is_set():
            with writing(engine) as conn:
                conn.execute(sa.select(nodes)).fetchall()
                conn.execute(sa.insert(nodes).values(id=f"busy-{writes}", updated=NOW))
            writes += 1
            busy_started.set()
            stop.wait(0.002)

    t = threading.Thread(target=busy, name="busy-writer")
    t.start()
    try:
        assert busy_started.wait(15)  # the upserts start beside a writer already at work
        for i in range(50):
            upsert(engine, f"pole-{i}", {"address": f"Pole {i}"}, NOW)
    finally:
        stop.set()
        t.join(15)
    assert writes > 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(nodes)).scalar() == 50 + writes
