"""Searching the archive: the Python API behind ``camnode-station events`` and the web console.

``search_events(engine, EventQuery(...))`` returns plain dicts, newest first by default. Place
filters (``site``, ``near`` + ``radius_m``) are resolved against the inventory (``nodes``)
first — a ward has tens of poles — and become a ``node IN (...)`` condition, so every search
is a range scan of one of the ``(column, start)`` indexes.

Paging is by key, never by OFFSET: rows are ordered by ``(start, id)`` (both descending when
newest first), and ``EventQuery.after`` — the ``(start, id)`` of the last row of the previous page
— asks for the rows that come after it in that order: ``start <= s AND (start < s OR id < i)``
keeps the index range scan bounded by ``start`` whatever the page. ``count_events`` counts the
matches up to a cap (the cost of a count is bounded like a page's).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from node.link.topics import iso
from station.archive.schema import events, nodes

#: the object classes the node reports (COCO names) and ``motion`` for motion-only events
CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
VEHICLES = ("bicycle", "car", "motorcycle", "bus", "truck")

EVENT_COLUMNS = (events.c.id, events.c.node, events.c.kind, events.c.label, events.c.phase,
                 events.c.start, events.c.end, events.c.duration_s, events.c.score,
                 events.c.snapshot_sha, events.c.colour_upper, events.c.colour_lower,
                 events.c.colour_body, events.c.entry_side, events.c.exit_side)


@dataclass(frozen=True)
class EventQuery:
    since: datetime | None = None  # naive UTC, inclusive
    until: datetime | None = None  # naive UTC, exclusive
    nodes: tuple[str, ...] = ()
    site: str | None = None
    near: tuple[float, float] | None = None  # (lat, lon)
    radius_m: float = 500.0
    label: str | None = None  # object class: person, car, motorcycle...
    colour: str | None = None  # any of the event's named colours
    kind: str | None = None  # object | motion
    limit: int = 100
    newest_first: bool = True
    #: keyset cursor: (start, id) of the last row already seen; the rows after it in this order
    after: tuple[datetime, str] | None = None


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine) in metres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def nodes_matching(engine: Engine, *, site: str | None = None, near: tuple[float, float] | None = None,
                   radius_m: float = 500.0) -> list[str]:
    """Inventory ids at ``site`` and/or within ``radius_m`` of ``near``."""
    stmt = select(nodes.c.id, nodes.c.lat, nodes.c.lon)
    if site is not None:
        stmt = stmt.where(nodes.c.site == site)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if near is None:
        return [r.id for r in rows]
    return [r.id for r in rows if r.lat is not None and r.lon is not None
            and distance_m(near, (r.lat, r.lon)) <= radius_m]


def row_to_dict(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    for k in ("start", "end"):
        if isinstance(d.get(k), datetime):
            d[k] = iso(d[k])
    return d


def _conditions(engine: Engine, q: EventQuery) -> list[Any] | None:
    """The WHERE conditions of ``q`` (None: no event can match, e.g. no pole near the place)."""
    where: list[Any] = []
    node_ids: Iterable[str] | None = q.nodes or None
    if q.site is not None or q.near is not None:
        placed = set(nodes_matching(engine, site=q.site, near=q.near, radius_m=q.radius_m))
        node_ids = placed if node_ids is None else placed & set(node_ids)
        if not node_ids:
            return None
    if node_ids is not None:
        where.append(events.c.node.in_(sorted(node_ids)))
    if q.since is not None:
        where.append(events.c.start >= q.since)
    if q.until is not None:
        where.append(events.c.start < q.until)
    if q.label is not None:
        where.append(events.c.label == q.label)
    if q.kind is not None:
        where.append(events.c.kind == q.kind)
    if q.colour is not None:  # a vehicle has a body colour, a person upper and lower ones
        if q.label in VEHICLES:
            where.append(events.c.colour_body == q.colour)
        elif q.label == "person":
            where.append(or_(events.c.colour_upper == q.colour, events.c.colour_lower == q.colour))
        else:
            where.append(or_(events.c.colour_upper == q.colour, events.c.colour_lower == q.colour,
                             events.c.colour_body == q.colour))
    return where


def _after(q: EventQuery) -> Any:
    """The keyset condition: rows strictly after ``q.after`` in the query's order."""
    assert q.after is not None
    s, i = q.after
    if q.newest_first:
        return and_(events.c.start <= s, or_(events.c.start < s, events.c.id < i))
    return and_(events.c.start >= s, or_(events.c.start > s, events.c.id > i))


def _select(engine: Engine, q: EventQuery, limit: int) -> list[Any]:
    where = _conditions(engine, q)
    if where is None:
        return []
    if q.after is not None:
        where.append(_after(q))
    if q.newest_first:
        order = (events.c.start.desc(), events.c.id.desc())
    else:
        order = (events.c.start.asc(), events.c.id.asc())
    stmt = select(*EVENT_COLUMNS).where(*where).order_by(*order).limit(limit)
    with engine.connect() as conn:
        return list(conn.execute(stmt))


def search_events(engine: Engine, q: EventQuery) -> list[dict[str, Any]]:
    return [row_to_dict(r) for r in _select(engine, q, q.limit)]


@dataclass(frozen=True)
class Page:
    """One page of a search: its rows (as ``search_events``), the exact ``(start, id)`` keys of
    its first and last rows (the cursors of the pages around it; the rows' ISO strings keep only
    milliseconds), and whether more rows follow the last one."""

    rows: list[dict[str, Any]]
    first: tuple[datetime, str] | None
    last: tuple[datetime, str] | None
    more: bool


def search_page(engine: Engine, q: EventQuery) -> Page:
    """``q.limit`` rows after ``q.after`` (one more is read to tell whether others follow)."""
    raw = _select(engine, q, q.limit + 1)
    more, raw = len(raw) > q.limit, raw[:q.limit]
    if not raw:
        return Page([], None, None, more)
    return Page([row_to_dict(r) for r in raw], (raw[0].start, raw[0].id), (raw[-1].start, raw[-1].id), more)


def count_events(engine: Engine, q: EventQuery, cap: int = 1000) -> int:
    """How many events match ``q`` (its cursor and limit ignored), counting at most ``cap``:
    a result of ``cap`` means "``cap`` or more"."""
    where = _conditions(engine, q)
    if where is None:
        return 0
    inner = select(events.c.start).where(*where).limit(cap).subquery()
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())


def event_key(engine: Engine, event_id: str) -> tuple[datetime, str] | None:
    """The exact ``(start, id)`` paging key of an archived event (None: no such event)."""
    with engine.connect() as conn:
        start = conn.execute(select(events.c.start).where(events.c.id == event_id)).scalar()
    return None if start is None else (start, event_id)


def get_event(engine: Engine, event_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(*EVENT_COLUMNS).where(events.c.id == event_id)).first()
    return None if row is None else row_to_dict(row)
