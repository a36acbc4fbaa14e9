"""Wrong-password rate limiting: after ``MAX_FAILURES`` failures within ``WINDOW_S`` for one
user name, or ``MAX_PER_ADDRESS`` from one address (higher: the post's PCs may share one
address behind NAT, and one officer's typos must not lock out the others), further log-ins are
refused until the window has passed.

Failures are rows in the database (they survive a restart and are shared by every console
process); the clock is handed in, so tests drive it with tables of times.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from station.archive.db import writing
from station.archive.schema import console_login_failures as login_failures

MAX_FAILURES = 5
MAX_PER_ADDRESS = 20
WINDOW_S = 300.0


def blocked_for(engine: sa.Engine, username: str, address: str, now: datetime,
                max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                max_per_address: int = MAX_PER_ADDRESS) -> float:
    """Seconds until a log-in of ``username`` from ``address`` may be tried again (0: now)."""
    since = now - timedelta(seconds=window_s)
    worst = 0.0
    with engine.connect() as c:
        for col, value, limit in ((login_failures.c.username, username, max_failures),
                                  (login_failures.c.address, address, max_per_address)):
            times = [r[0] for r in c.execute(
                sa.select(login_failures.c.at_utc).where(col == value, login_failures.c.at_utc > since)
                .order_by(login_failures.c.at_utc.desc()).limit(limit))]
            if len(times) >= limit:
                oldest = _aware(times[-1])
                worst = max(worst, (oldest + timedelta(seconds=window_s) - now).total_seconds())
    return max(worst, 0.0)


def record_failure(engine: sa.Engine, username: str, address: str, now: datetime) -> None:
    with writing(engine) as c:
        c.execute(login_failures.insert().values(username=username[:64], address=address[:64], at_utc=now))
        # keep the table small: nothing older than a day matters
        c.execute(login_failures.delete().where(login_failures.c.at_utc < now - timedelta(days=1)))


def clear(engine: sa.Engine, username: str) -> None:
    """A successful log-in forgets that user's failures (not the address's)."""
    with writing(engine) as c:
        c.execute(login_failures.delete().where(login_failures.c.username == username))


def _aware(t: datetime) -> datetime:
    from datetime import UTC

    return t if t.tzinfo else t.replace(tzinfo=UTC)
