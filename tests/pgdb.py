"""A throw-away database on the PostgreSQL server the tests use (``CAMNODE_TEST_PG``, default
the local server with trust authentication, user postgres)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

SERVER = os.environ.get("CAMNODE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


@contextlib.contextmanager
def temporary_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"camnode_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the suite needs the server: fail loudly, never skip
        admin.dispose()
        pytest.fail(f"PostgreSQL at {SERVER} not usable: {exc}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
