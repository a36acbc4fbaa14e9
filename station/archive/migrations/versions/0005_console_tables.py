"""the web console's tables join the migrations

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Consoles before this revision created their four tables themselves (``create_all``) beside the
archive's schema: on such an archive the tables are already there, with this very shape, and
are adopted as they are (rows kept); elsewhere they are created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TABLES = ("console_users", "console_login_failures", "console_audit", "console_alert_acks")


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "console_users" not in present:
        op.create_table(
            'console_users',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('username', sa.String(length=64), nullable=False),
            sa.Column('display_name', sa.String(length=128), nullable=False),
            sa.Column('role', sa.String(length=16), nullable=False),
            sa.Column('password_hash', sa.String(length=256), nullable=False),
            sa.Column('active', sa.Boolean(), nullable=False),
            sa.Column('session_epoch', sa.Integer(), nullable=False),
            sa.Column('created_utc', sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('username'))
    if "console_login_failures" not in present:
        op.create_table(
            'console_login_failures',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('username', sa.String(length=64), nullable=False),
            sa.Column('address', sa.String(length=64), nullable=False),
            sa.Column('at_utc', sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint('id'))
        with op.batch_alter_table('console_login_failures') as batch_op:
            batch_op.create_index('ix_console_login_failures_address', ['address'])
            batch_op.create_index('ix_console_login_failures_at_utc', ['at_utc'])
            batch_op.create_index('ix_console_login_failures_username', ['username'])
    if "console_audit" not in present:
        op.create_table(
            'console_audit',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('at_utc', sa.DateTime(timezone=True), nullable=False),
            sa.Column('username', sa.String(length=64), nullable=False),
            sa.Column('role', sa.String(length=16), nullable=False),
            sa.Column('action', sa.String(length=32), nullable=False),
            sa.Column('target', sa.String(length=256), nullable=False),
            sa.Column('allowed', sa.Boolean(), nullable=False),
            sa.Column('address', sa.String(length=64), nullable=False),
            sa.Column('detail', sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint('id'))
        with op.batch_alter_table('console_audit') as batch_op:
            batch_op.create_index('ix_console_audit_action', ['action'])
            batch_op.create_index('ix_console_audit_at_utc', ['at_utc'])
            batch_op.create_index('ix_console_audit_username', ['username'])
    if "console_alert_acks" not in present:
        op.create_table(
            'console_alert_acks',
            sa.Column('event_id', sa.String(length=128), nullable=False),
            sa.Column('node_id', sa.String(length=64), nullable=False),
            sa.Column('username', sa.String(length=64), nullable=False),
            sa.Column('at_utc', sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint('event_id'))


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
