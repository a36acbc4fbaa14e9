"""Archive search at scale (issue 10): p50/p95 of ``search_events`` over 1,000,000 events, on
SQLite and on the PostgreSQL server, for the searches a police post makes.

Rows are generated in bulk (60 poles on 3 sites, 30 days, motion 50 %, person 30 %, car 12 %,
motorcycle 6 %, bicycle 2 %, named colours), written with executemany (SQLite) or COPY
(PostgreSQL) into a schema built by the real migrations, then ANALYZEd. Each query kind runs
``--repeat`` times with random parameters. Same-run comparisons: p95 against the 100 ms budget,
and against the same queries on a 10,000-event archive (how search scales with size). Paging
(the console's): for each kind, also the 5th page of 50 by keyset cursor (``EventQuery.after``),
the capped count (``count_events``, ≤ 1000) and the console's whole page (page + count), in the
same run as the first page.

Run: ``.venv/bin/python bench/bench_search.py [--events 1000000] [--repeat 40] [--only sqlite]``
(part of ``make bench``; PostgreSQL at ``$CAMNODE_TEST_PG``, default the local server).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert, text  # noqa: E402

from station.archive import EventQuery, open_archive, search_events  # noqa: E402
from station.archive.query import count_events, search_page  # noqa: E402
from station.archive.schema import events, nodes  # noqa: E402
from tests.pgdb import temporary_database  # noqa: E402

EPOCH = datetime(2026, 11, 1)
DAYS = 30
SITES = ("market", "station", "riverside")
COLOURS = ("black", "white", "grey", "red", "blue", "green", "yellow", "orange", "brown", "purple", "pink")
LABELS = (("motion", 50), ("person", 30), ("car", 12), ("motorcycle", 6), ("bicycle", 2))
BUDGET_MS = 100.0
PAGE = 50  # the console's page size
DEEP = 5  # the page measured "deep"
COUNT_CAP = 1000
JSON_COLUMNS = ("payload", "classes", "box")


def node_rows() -> list[dict]:
    out = []
    for i in range(60):
        out.append({"id": f"pole-{i:02d}", "site": SITES[i % 3], "pole": f"P{i:02d}", "address": "",
                    "lat": 52.50 + (i // 10) * 0.002, "lon": 13.40 + (i % 10) * 0.002, "facing_deg": 90.0,
                    "neighbours": [], "pubkey": "", "updated": EPOCH})
    return out


def event_rows(n: int, seed: int = 1):
    rnd = random.Random(seed)
    labels = [lab for lab, w in LABELS for _ in range(w)]
    span = DAYS * 86400
    for i in range(n):
        label = rnd.choice(labels)
        start = EPOCH + timedelta(seconds=span * i / n + rnd.random())
        kind = "motion" if label == "motion" else "object"
        up = lo = body = None
        if label == "person":
            up, lo = rnd.choice(COLOURS), rnd.choice(COLOURS)
        elif kind == "object":
            body = rnd.choice(COLOURS)
        yield {"id": f"{start:%Y%m%dT%H%M%S}-{i}", "node": f"pole-{rnd.randrange(60):02d}", "kind": kind,
               "label": "" if kind == "motion" else label, "phase": "end", "phases": 7, "start": start,
               "end": start + timedelta(seconds=8), "duration_s": 8.0, "score": 0.7,
               "classes": None, "box": None, "snapshot": kind == "object", "snapshot_sha": None,
               "colour_upper": up, "colour_lower": lo, "colour_body": body,
               "entry_side": rnd.choice(("left", "right")), "exit_side": rnd.choice(("left", "right")),
               "payload": {"id": i}, "messages": 3, "received": start}


def fill(url: str, n: int) -> float:
    t0 = time.perf_counter()
    engine = open_archive(url)
    with engine.begin() as conn:
        conn.execute(insert(nodes), node_rows())
    cols = [c.name for c in events.columns]
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            quoted = ", ".join(f'"{c}"' for c in cols)
            with cur.copy(f"COPY events ({quoted}) FROM STDIN") as copy:
                for r in event_rows(n):
                    copy.write_row([json.dumps(r[c]) if c in JSON_COLUMNS and r[c] is not None
                                    else r[c] for c in cols])
            raw.commit()
        finally:
            raw.close()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE events"))
    else:
        chunk: list[dict] = []
        with engine.begin() as conn:
            for r in event_rows(n):
                chunk.append(r)
                if len(chunk) == 50_000:
                    conn.execute(insert(events), chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(events), chunk)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - t0


def queries(rnd: random.Random):
    """(name, EventQuery) pairs of what a post asks, with random parameters."""
    def day(d_from: float = 0, d_to: float = DAYS) -> datetime:
        return EPOCH + timedelta(days=rnd.uniform(d_from, d_to))

    t = day(1, DAYS - 1)
    node_row = rnd.randrange(60)
    lat, lon = 52.50 + (node_row // 10) * 0.002, 13.40 + (node_row % 10) * 0.002
    return [
        ("newest 100", EventQuery()),
        ("one pole, 24 h", EventQuery(nodes=(f"pole-{node_row:02d}",), since=t - timedelta(days=1), until=t)),
        ("site + person, 7 days", EventQuery(site=rnd.choice(SITES), label="person",
                                             since=t - timedelta(days=7), until=t)),
        ("near 300 m + motorcycle, ±1 h", EventQuery(near=(lat, lon), radius_m=300, label="motorcycle",
                                                     since=t - timedelta(hours=1),
                                                     until=t + timedelta(hours=1))),
        ("colour + person, 3 days", EventQuery(colour=rnd.choice(COLOURS), label="person",
                                               since=t - timedelta(days=3), until=t)),
        ("colour + car, 30 days", EventQuery(colour=rnd.choice(COLOURS), label="car")),
        ("colour + motorcycle + site", EventQuery(colour=rnd.choice(COLOURS), label="motorcycle",
                                                  site=rnd.choice(SITES))),
        ("all poles, 10 min", EventQuery(since=t, until=t + timedelta(minutes=10), limit=1000)),
    ]


def _ms(f, *args) -> float:
    t0 = time.perf_counter()
    f(*args)
    return (time.perf_counter() - t0) * 1000


def _console_page(engine, q: EventQuery) -> None:
    search_page(engine, q)
    count_events(engine, q, COUNT_CAP)


def measure(url: str, repeat: int) -> dict[str, dict[str, list[float]]]:
    """{kind: {"first": [...], "deep": [...], "count": [...], "console": [...]}} in ms."""
    engine = open_archive(url, migrate=False)
    rnd = random.Random(7)
    times: dict[str, dict[str, list[float]]] = {}
    search_events(engine, EventQuery())  # warm the pool and the caches' first page
    for _ in range(repeat):
        for name, q in queries(rnd):
            t = times.setdefault(name, {"first": [], "deep": [], "count": [], "console": []})
            t["first"].append(_ms(search_events, engine, q))
            pq = replace(q, limit=PAGE)
            after = None
            for _ in range(DEEP - 1):  # walk to the deep page's cursor (not timed)
                page = search_page(engine, replace(pq, after=after))
                after = page.last if page.more else after
            t["deep"].append(_ms(search_page, engine, replace(pq, after=after)))
            t["count"].append(_ms(count_events, engine, q, COUNT_CAP))
            t["console"].append(_ms(_console_page, engine, pq))
    engine.dispose()
    return times


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 2 else xs[0]


def run_backend(backend: str, n: int, repeat: int, tmp: Path) -> None:
    results = {}
    for size in (10_000, n):
        if backend == "sqlite":
            url = f"sqlite:///{tmp / f'search-{size}.db'}"
            fill_s = fill(url, size)
            results[size] = (fill_s, measure(url, repeat))
        else:
            with temporary_database() as url:
                fill_s = fill(url, size)
                results[size] = (fill_s, measure(url, repeat))
    small, big = results[10_000][1], results[n][1]
    print(f"-- {backend}: {n:,} events generated and indexed in {results[n][0]:.0f} s")
    print(f"   {'query':<32} {'p50 ms':>8} {'p95 ms':>8} {'p95/budget':>10} {'p95 vs 10k':>10}"
          f" | p95 ms: {'page ' + str(DEEP):>7} {'count':>7} {'console':>7}")
    every: dict[str, list[float]] = {"first": [], "deep": [], "count": [], "console": []}
    for name, t in big.items():
        xs = t["first"]
        for k in every:
            every[k] += t[k]
        print(f"   {name:<32} {statistics.median(xs):8.1f} {p95(xs):8.1f} {p95(xs) / BUDGET_MS:10.2f} "
              f"{p95(xs) / max(p95(small[name]['first']), 1e-3):9.1f}x"
              f" |         {p95(t['deep']):7.1f} {p95(t['count']):7.1f} {p95(t['console']):7.1f}")
    xs = every["first"]
    label = f"ALL ({len(xs)} searches)"
    print(f"   {label:<32} {statistics.median(xs):8.1f} {p95(xs):8.1f} "
          f"{p95(xs) / BUDGET_MS:10.2f}   (budget {BUDGET_MS:.0f} ms)"
          f"  |  {p95(every['deep']):7.1f} {p95(every['count']):7.1f} {p95(every['console']):7.1f}")
    print(f"   (page {DEEP}: the {DEEP}th page of {PAGE} by keyset cursor; count: count_events capped at "
          f"{COUNT_CAP}; console: a page of {PAGE} + the count, what /search runs)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--only", choices=("sqlite", "postgresql"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="camnode-search-") as tmp:
        for backend in ("sqlite", "postgresql"):
            if args.only in (None, backend):
                run_backend(backend, args.events, args.repeat, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
