"""The console's own tables (users, log-in failures, audit log, alert acknowledgements).

SQLAlchemy Core on its own ``MetaData``, so they sit in the archive's database (SQLite or
PostgreSQL) without touching its schema. Times are stored in UTC.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "console_users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(128), nullable=False, default=""),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    # bumped on password change / deactivation: every older session of the user ends
    sa.Column("session_epoch", sa.Integer, nullable=False, default=0),
    sa.Column("created_utc", sa.DateTime(timezone=True), nullable=False),
)

login_failures = sa.Table(
    "console_login_failures", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("address", sa.String(64), nullable=False, index=True),
    sa.Column("at_utc", sa.DateTime(timezone=True), nullable=False, index=True),
)

audit = sa.Table(
    "console_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at_utc", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("action", sa.String(32), nullable=False, index=True),
    sa.Column("target", sa.String(256), nullable=False, default=""),
    sa.Column("allowed", sa.Boolean, nullable=False),
    sa.Column("address", sa.String(64), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

acks = sa.Table(
    "console_alert_acks", metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("node_id", sa.String(64), nullable=False),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("at_utc", sa.DateTime(timezone=True), nullable=False),
)


def create(engine: sa.Engine) -> None:
    """Create the console's tables where missing (idempotent)."""
    metadata.create_all(engine)
