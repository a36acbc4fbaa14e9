"""Keyset paging of archive searches on SQLite and on the real PostgreSQL server: walking the
pages forwards and back gives every matching row exactly once, in order — with many events
sharing a start time (to the microsecond), with filters, and while new events arrive."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert

from station.archive import open_archive
from station.archive.query import EventQuery, count_events, search_page
from station.archive.schema import events, nodes

T0 = datetime(2026, 11, 22, 18, 0, 0)


def event(i: int, start: datetime, node: str, label: str, body: str | None = None) -> dict:
    return {"id": f"ev-{i:04d}", "node": node, "kind": "object" if label else "motion", "label": label,
            "phase": "end", "phases": 7, "start": start, "end": None, "duration_s": 1.0, "score": 0.5,
            "classes": None, "box": None, "snapshot": False, "snapshot_sha": None,
            "colour_upper": None, "colour_lower": None, "colour_body": body, "entry_side": None,
            "exit_side": None, "payload": {}, "messages": 1, "received": start}


@pytest.fixture
def engine(archive_url):
    e = open_archive(archive_url)
    rnd = random.Random(3)
    with e.begin() as conn:
        conn.execute(insert(nodes), [
            {"id": f"pole-{k}", "site": "market", "lat": 21.0 + k * 0.001, "lon": 105.0, "neighbours": [],
             "pubkey": "", "updated": T0} for k in range(1, 5)])
        rows = []
        for i in range(400):
            # 40 distinct instants: ten events share each, some differ only in microseconds
            start = T0 + timedelta(seconds=(i % 40) * 7, microseconds=(i % 3) * 250)
            label = rnd.choice(("person", "motorcycle", ""))
            rows.append(event(i, start, f"pole-{rnd.randrange(1, 5)}", label,
                              rnd.choice(("red", "blue")) if label == "motorcycle" else None))
        conn.execute(insert(events), rows)
    yield e
    e.dispose()


def expected(engine, q: EventQuery) -> list[str]:
    """Every matching id in the query's order, from one unpaged search."""
    return [r["id"] for r in search_page(engine, replace(q, limit=10_000)).rows]


def walk(engine, q: EventQuery) -> list[str]:
    got, after = [], None
    while True:
        page = search_page(engine, replace(q, after=after))
        got += [r["id"] for r in page.rows]
        assert len(page.rows) <= q.limit
        if not page.more:
            return got
        assert len(page.rows) == q.limit and page.last is not None
        after = page.last


@pytest.mark.parametrize("q", [
    EventQuery(limit=7),
    EventQuery(limit=10),  # a page ends exactly where a group of equal start times does
    EventQuery(limit=13, newest_first=False),
    EventQuery(limit=5, label="motorcycle", colour="red"),
    EventQuery(limit=9, nodes=("pole-2",), since=T0 + timedelta(seconds=30),
               until=T0 + timedelta(seconds=200)),
    EventQuery(limit=4, near=(21.001, 105.0), radius_m=150, label="person"),
], ids=["7", "10", "oldest-13", "red-moto", "pole-window", "near-person"])
def test_pages_give_every_row_once_in_order(engine, q):
    want = expected(engine, q)
    assert len(want) >= 2 * q.limit  # several pages
    got = walk(engine, q)
    assert got == want
    assert len(set(got)) == len(got)


def test_order_is_start_then_id_and_the_page_keys_are_exact(engine):
    page = search_page(engine, EventQuery(limit=25))
    with engine.connect() as conn:
        full = {r.id: r.start for r in conn.execute(events.select())}
    keys = [(full[r["id"]], r["id"]) for r in page.rows]
    assert keys == sorted(keys, reverse=True)
    assert page.first == keys[0] and page.last == keys[-1]
    # the keys are the database's starts, not the rows' millisecond strings: this page has
    # starts a millisecond string cannot hold, so the equality above would catch a rounded key
    assert any(k[0].microsecond % 1000 for k in keys)


def test_newer_pages_by_walking_back_from_a_cursor(engine):
    older = search_page(engine, EventQuery(limit=10))
    second = search_page(engine, EventQuery(limit=10, after=older.last))
    # the page before the second, asked oldest first from its first row, is the first again
    back = search_page(engine, EventQuery(limit=10, newest_first=False, after=second.first))
    assert [r["id"] for r in reversed(back.rows)] == [r["id"] for r in older.rows] and not back.more


def test_events_arriving_while_paging_do_not_repeat_or_hide_older_rows(engine):
    q = EventQuery(limit=8)
    want = expected(engine, q)
    first = search_page(engine, q)
    with engine.begin() as conn:  # a newer event, and one sharing the cursor's start time
        conn.execute(insert(events), [event(900, T0 + timedelta(hours=1), "pole-1", "person"),
                                      event(901, first.last[0], "pole-1", "person")])
    rest, after = [], first.last
    while after is not None:
        page = search_page(engine, replace(q, after=after))
        rest += [r["id"] for r in page.rows]
        after = page.last if page.more else None
    ids = [r["id"] for r in first.rows] + rest
    # ev-0901 sorts after the cursor's row (same start, larger id) so it is above it: not shown
    assert ids == want


def test_count_is_exact_up_to_its_cap(engine):
    q = EventQuery(label="motorcycle")
    n = len(expected(engine, q))
    assert count_events(engine, q) == n
    assert count_events(engine, q, cap=10) == 10
    assert count_events(engine, EventQuery(near=(0.0, 0.0), radius_m=100)) == 0
    assert count_events(engine, EventQuery(label="motorcycle", after=(T0, "x"), limit=1)) == n


def test_the_cli_pages_with_after_id(engine, archive_url):
    import subprocess
    import sys

    from tests.stationproc import REPO, events_cli

    want = expected(engine, EventQuery(label="person"))
    got, last = [], []
    while True:
        page = [r["id"] for r in events_cli(archive_url, "--class", "person", "--limit", "40", *last)]
        got += page
        if len(page) < 40:
            break
        last = ["--after-id", page[-1]]
    assert got == want
    out = subprocess.run([sys.executable, "-m", "station.cli", "events", "--db", archive_url,
                          "--after-id", "no-such-event"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "no such event" in out.stderr and len(out.stderr.splitlines()) == 1
