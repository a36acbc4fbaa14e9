"""What the console reads from the station's archive (issue 10), through the archive's own
query functions — the console, the CLI and the tests get the same answer to the same question.

Times: the archive keeps naive UTC; this module hands the pages aware UTC (or ISO strings as
the archive's query API returns them).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from station.archive.ingest import media_path
from station.archive.inventory import list_nodes
from station.archive.query import (
    EventQuery,
    Page,
    count_events,
    get_event,
    search_events,
    search_page,
)
from station.archive.schema import heartbeats, snapshots
from station.archive.trace import Trace, TraceError, trace
from station.console.plan import Pole

__all__ = ["ArchiveView", "TraceError"]


def _naive_utc(t: datetime | None) -> datetime | None:
    return None if t is None else t.astimezone(UTC).replace(tzinfo=None)


class ArchiveView:
    def __init__(self, engine: sa.Engine, media_dir: Path) -> None:
        self.engine = engine
        self.media_dir = Path(media_dir)

    def poles(self) -> list[Pole]:
        out = []
        for n in list_nodes(self.engine):
            neigh = n.get("neighbours") or []
            out.append(Pole(n["id"], n.get("pole") or n["id"], n.get("lat"), n.get("lon"),
                            n.get("address") or "", tuple(str(x) for x in neigh if isinstance(x, str))))
        return out

    @staticmethod
    def query(*, since: datetime | None, until: datetime | None, label: str | None, colour: str | None,
              node: str | None, near: tuple[float, float] | None = None, radius_m: float = 500.0,
              limit: int = 100) -> EventQuery:
        """The archive query of the search form's filters (times aware, any zone)."""
        return EventQuery(since=_naive_utc(since), until=_naive_utc(until), nodes=(node,) if node else (),
                          near=near, radius_m=radius_m, label=label, colour=colour,
                          kind="object" if label else None, limit=limit)

    def search(self, *, since: datetime | None, until: datetime | None, label: str | None,
               colour: str | None, node: str | None, limit: int = 200) -> list[dict[str, Any]]:
        q = self.query(since=since, until=until, label=label, colour=colour, node=node, limit=limit)
        return search_events(self.engine, q)

    def page(self, q: EventQuery) -> Page:
        return search_page(self.engine, q)

    def count(self, q: EventQuery, cap: int) -> int:
        return count_events(self.engine, q, cap)

    def recent_alerts(self, limit: int = 100) -> list[dict[str, Any]]:
        return search_events(self.engine, EventQuery(kind="object", limit=limit))

    def event(self, event_id: str) -> dict[str, Any] | None:
        return get_event(self.engine, event_id)

    def trace(self, event_id: str, minutes: float = 10.0) -> Trace:
        return trace(self.engine, event_id, minutes=minutes)

    def snapshot(self, event_id: str) -> tuple[str, bytes] | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(snapshots.c.node, snapshots.c.sha256)
                          .where(snapshots.c.event_id == event_id)).first()
        if r is None or not all(ch in "0123456789abcdef" for ch in r.sha256):
            return None
        path = media_path(self.media_dir, r.sha256)
        try:
            return r.node, path.read_bytes()
        except OSError:
            return None

    def history(self, node: str, since: datetime) -> list[dict[str, Any]]:
        """Archived heartbeats of ``node`` since ``since`` (one a minute, plus fault changes)."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(heartbeats.c.utc, heartbeats.c.payload)
                             .where(heartbeats.c.node == node, heartbeats.c.utc >= _naive_utc(since))
                             .order_by(heartbeats.c.utc).limit(5000)).all()
        return [{"utc": r.utc.replace(tzinfo=UTC), "hb": r.payload if isinstance(r.payload, dict) else {}}
                for r in rows]


def merge_history(archived: list[dict[str, Any]], live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Archived points, then the live ones newer than the last archived (heartbeat charts)."""
    last = archived[-1]["utc"] if archived else None
    return archived + [p for p in live if last is None or p["utc"] > last + timedelta(seconds=0)]
