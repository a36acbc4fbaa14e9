"""Opening the archive: a database URL → an engine whose schema the migrations brought up to date.

URLs: ``sqlite:///path/archive.db`` (the default; the folder is created, WAL journal),
``postgresql://user@host/db`` (driven by psycopg 3). A bare path is taken as a SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from station.archive.migrate import upgrade


class ArchiveError(Exception):
    """The archive cannot be opened (bad URL, unreachable server, unwritable file)."""


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and bare paths; return a URL SQLAlchemy will drive."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINTs: SQLAlchemy emits BEGIN itself
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # the wait first: on a new file the first connection turns WAL on with the file locked, and
    # a second program connecting that moment (two services starting together) must wait for
    # it, not fail at once with "database is locked"
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


#: execution option :func:`writing` sets: SQLite begins such a transaction IMMEDIATE
_WRITE = "camnode_write"


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: committed at the end of the block, rolled back on an exception.

    On SQLite it takes the write lock when it begins (``BEGIN IMMEDIATE``). A deferred
    transaction that reads and then writes fails at its first write with "database is locked"
    when another connection committed in between (SQLite cannot upgrade a read snapshot that a
    writer overtook, and ``busy_timeout`` does not wait for that case); an immediate one waits up
    to ``busy_timeout`` for the other writer instead. Reads keep plain ``engine.connect()``.
    On PostgreSQL this is ``engine.begin()``.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


def make_engine(url: str) -> Engine:
    try:
        u = make_url(normalise_url(url))
    except ArgumentError as exc:
        raise ArchiveError(f"not a database URL: {url!r} ({exc})") from None
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if u.get_backend_name() == "postgresql":
        return create_engine(u, pool_pre_ping=True, pool_size=4, max_overflow=4)
    raise ArchiveError(f"unsupported database {u.get_backend_name()!r}: use sqlite:/// or postgresql://")


def open_archive(url: str, *, migrate: bool = True) -> Engine:
    """An engine on ``url``, its schema migrated to the newest version (``migrate=False``: as is).

    Raises :class:`ArchiveError` with a one-line reason when the database cannot be used.
    """
    engine = make_engine(url)
    try:
        if migrate:
            upgrade(engine)
        else:
            with engine.connect():
                pass
    except Exception as exc:  # driver errors differ per backend: one clear line for the CLI
        engine.dispose()
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ArchiveError(f"archive {make_url(normalise_url(url)).render_as_string()}: {detail}") \
            from None
    return engine
