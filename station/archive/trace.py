"""Following a person or vehicle from pole to pole: ``trace(engine, event_id, minutes=10)``.

From one archived event, the events of the same class on the poles around it (the inventory's
neighbours, and poles within ``radius_m`` when positions are known) within ± ``minutes``:

* **candidates**, ranked: matching named colours first (upper + lower body for a person,
  body for a vehicle), then those on the pole the object headed for, then nearest in time;
* **path**, ordered along time: chained forwards from the event through the side of the frame
  it left by — a camera looking along bearing *f* sees ``right`` at *f* + 90°, ``left`` at
  *f* − 90°, ``top`` (away) at *f*, ``bottom`` (towards it) at *f* + 180° — to the neighbour
  in that direction, and backwards through the side it entered by; at each step the best
  colour match among the events on that neighbour within the window.

The answer to "where did they go next". Thread: the caller's; read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from station.archive.query import EVENT_COLUMNS, distance_m, row_to_dict
from station.archive.schema import events, nodes

SIDE_OFFSET = {"top": 0.0, "right": 90.0, "bottom": 180.0, "left": 270.0}
#: a neighbour counts as "the one it faces" within this many degrees of the side's bearing
FACING_TOLERANCE = 60.0


class TraceError(LookupError):
    pass


@dataclass
class Trace:
    origin: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    path: list[dict[str, Any]] = field(default_factory=list)
    poles: list[str] = field(default_factory=list)


def bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial compass bearing from a to b (degrees, 0 = north, clockwise)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360


def side_bearing(facing_deg: float | None, side: str | None) -> float | None:
    if facing_deg is None or side not in SIDE_OFFSET:
        return None
    return (facing_deg + SIDE_OFFSET[side]) % 360


def angle_between(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def colour_match(origin: dict[str, Any], other: dict[str, Any]) -> int:
    """How many of the origin's named colours the other event shares (same part)."""
    return sum(1 for k in ("colour_upper", "colour_lower", "colour_body")
               if origin.get(k) and origin.get(k) == other.get(k))


def _around(inv: dict[str, dict], node: str, radius_m: float) -> set[str]:
    me = inv.get(node)
    if me is None:
        return set()
    near = set(me["neighbours"] or [])
    if me["lat"] is not None and me["lon"] is not None:
        near |= {n for n, r in inv.items() if r["lat"] is not None and r["lon"] is not None
                 and distance_m((me["lat"], me["lon"]), (r["lat"], r["lon"])) <= radius_m}
    near.discard(node)
    return near


def _headed_for(inv: dict[str, dict], node: str, side: str | None, choices: set[str]) -> set[str]:
    """The neighbours lying in the direction of ``side`` as seen by ``node``'s camera."""
    me = inv.get(node)
    if me is None or me["lat"] is None:
        return set()
    want = side_bearing(me["facing_deg"], side)
    if want is None:
        return set()
    out = set()
    for n in choices:
        r = inv.get(n)
        if r is None or r["lat"] is None:
            continue
        if angle_between(bearing((me["lat"], me["lon"]), (r["lat"], r["lon"])), want) <= FACING_TOLERANCE:
            out.add(n)
    return out


def trace(engine: Engine, event_id: str, minutes: float = 10.0, radius_m: float = 600.0,
          max_steps: int = 20) -> Trace:
    with engine.connect() as conn:
        row = conn.execute(select(*EVENT_COLUMNS).where(events.c.id == event_id)).first()
        if row is None:
            raise TraceError(f"no event {event_id!r} in the archive")
        origin = row_to_dict(row)
        start: datetime = row.start
        inv = {r.id: dict(r._mapping) for r in conn.execute(select(nodes))}
        # poles two hops out: the path may pass through a neighbour to the next one
        poles = {origin["node"]} | _around(inv, origin["node"], radius_m)
        for n in list(poles):
            poles |= _around(inv, n, radius_m)
        window = timedelta(minutes=minutes)
        cond = [events.c.node.in_(sorted(poles)), events.c.start >= start - window,
                events.c.start <= start + window, events.c.id != event_id]
        cond.append(events.c.label == origin["label"] if origin["label"] else events.c.kind == origin["kind"])
        found = [(r.start, row_to_dict(r)) for r in
                 conn.execute(select(*EVENT_COLUMNS).where(*cond).order_by(events.c.start))]
    headed = _headed_for(inv, origin["node"], origin["exit_side"], _around(inv, origin["node"], radius_m))
    came = _headed_for(inv, origin["node"], origin["entry_side"], _around(inv, origin["node"], radius_m))
    cands = []
    for ts, ev in found:
        ev = {**ev, "colour_match": colour_match(origin, ev),
              "toward": (ev["node"] in headed and ts >= start) or (ev["node"] in came and ts < start),
              "offset_s": round((ts - start).total_seconds(), 1)}
        cands.append((ts, ev))
    ranked = sorted((ev for _, ev in cands),
                    key=lambda e: (-e["colour_match"], not e["toward"], abs(e["offset_s"])))
    before = _chain(inv, origin, start, cands, radius_m, max_steps, forward=False)
    after = _chain(inv, origin, start, cands, radius_m, max_steps, forward=True)
    path = [*before[::-1], origin, *after]
    return Trace(origin=origin, candidates=ranked, path=path, poles=sorted(poles))


def _chain(inv, origin, start, cands, radius_m, max_steps, *, forward: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cur, cur_ts, used = origin, start, {origin["id"]}
    for _ in range(max_steps):
        around = _around(inv, cur["node"], radius_m)
        side = cur["exit_side"] if forward else cur["entry_side"]
        toward = _headed_for(inv, cur["node"], side, around) or around
        options = [(ts, ev) for ts, ev in cands if ev["id"] not in used and ev["node"] in toward
                   and (ts > cur_ts if forward else ts < cur_ts)]
        if not options:
            break
        here = cur_ts
        ts, best = min(options, key=lambda p: (-colour_match(origin, p[1]),
                                               abs((p[0] - here).total_seconds())))
        out.append(best)
        used.add(best["id"])
        cur, cur_ts = best, ts
    return out
