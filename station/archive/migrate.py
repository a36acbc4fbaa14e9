"""Alembic, driven from code: the migrations ship inside the package (no alembic.ini needed).

``upgrade(engine)`` brings any archive to the newest schema; two services starting together
serialise on an advisory lock (PostgreSQL) or a lock file beside the database (SQLite).
Developers add a revision with
``alembic -c station/archive/alembic.ini revision -m "..."``.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x63616D6E  # "camn": one advisory lock for schema changes


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    return str(ScriptDirectory.from_config(config()).get_current_head())


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    if revision == "head" and current(engine) == head():
        return
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if path and path != ":memory:":
        # two services starting on one new SQLite file: one migrates, the other waits (SQLite
        # refuses the second writer at once instead of waiting when both began by reading)
        with open(f"{path}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if revision != "head" or current(engine) != head():
                    _upgrade(engine, revision)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    _upgrade(engine, revision)


def _upgrade(engine: Engine, revision: str) -> None:
    cfg = config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
