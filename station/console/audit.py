"""The audit log: every view of footage, every export, every refusal and every command.

One row per act: who (user name and role), what (``action``), on what (``target``), whether it
was allowed, from where. Admins read it on the audit page; nothing in the console deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from station.archive.db import writing
from station.archive.schema import console_audit as audit


@dataclass(frozen=True)
class Entry:
    id: int
    at_utc: datetime
    username: str
    role: str
    action: str
    target: str
    allowed: bool
    address: str
    detail: str


def record(engine: sa.Engine, now: datetime, username: str, role: str, action: str, target: str = "",
           allowed: bool = True, address: str = "", detail: str = "") -> None:
    with writing(engine) as c:
        c.execute(audit.insert().values(at_utc=now, username=username[:64], role=role[:16],
                                        action=action[:32], target=target[:256], allowed=allowed,
                                        address=address[:64], detail=detail[:2000]))


def recent(engine: sa.Engine, limit: int = 200, username: str = "", action: str = "",
           before: int | None = None) -> list[Entry]:
    """Newest first; ``before``: only entries older than that id (the next page)."""
    q = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
    if before is not None:
        q = q.where(audit.c.id < before)
    if username:
        q = q.where(audit.c.username == username)
    if action:
        q = q.where(audit.c.action == action)
    with engine.connect() as c:
        return [Entry(r.id, r.at_utc, r.username, r.role, r.action, r.target, bool(r.allowed), r.address,
                      r.detail) for r in c.execute(q)]
