"""Alembic environment: runs on the connection ``station.archive.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from station.archive.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # the alembic command line (developers): a URL in alembic.ini
    from sqlalchemy import create_engine

    from station.archive.db import normalise_url

    engine = create_engine(normalise_url(context.config.get_main_option("sqlalchemy.url")))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
