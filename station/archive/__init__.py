"""The station's archive: one schema (SQLAlchemy Core), versioned with Alembic migrations,
on SQLite (default, zero set-up) or PostgreSQL (by URL).

* :mod:`station.archive.schema` — the tables;
* :mod:`station.archive.db` — opening a database URL (and migrating it to the current schema);
* :mod:`station.archive.ingest` — turning node messages into rows (idempotent, merging);
* :mod:`station.archive.query` — the search API used by the CLI and the web console.
"""

from station.archive.db import open_archive
from station.archive.query import EventQuery, search_events

__all__ = ["EventQuery", "open_archive", "search_events"]
