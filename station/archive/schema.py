"""The archive's tables (SQLAlchemy Core), the web console's included. Times are UTC: naive
``DateTime`` columns in the archive's tables, zone-aware ones in the console's.

A change here is a new migration in ``station/archive/migrations/versions`` (the schema the
service runs on is always the one the migrations build;
``tests/archive/test_archive_ingest.py::test_migrations_build_the_schema_the_code_uses`` compares
them on SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: event phases in the order they supersede each other (an update never overwrites an end)
PHASE_RANK = {"start": 0, "update": 1, "end": 2}

nodes = Table(
    "nodes", metadata,
    Column("id", String(64), primary_key=True),
    Column("site", String(128), nullable=False, default=""),
    Column("pole", String(64), nullable=False, default=""),
    Column("address", String(256), nullable=False, default=""),
    Column("lat", Float),
    Column("lon", Float),
    #: compass bearing the camera looks along (degrees, 0 = north)
    Column("facing_deg", Float),
    #: ids of the neighbouring poles (JSON list)
    Column("neighbours", JSON, nullable=False, default=list),
    #: the node's Ed25519 footage-signing public key (PEM or hex), from provisioning
    Column("pubkey", Text, nullable=False, default=""),
    Column("updated", DateTime, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", String(96), primary_key=True),
    Column("node", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("label", String(32), nullable=False, default=""),
    #: the furthest phase seen (start < update < end) and the set of phases seen (bits 1, 2, 4)
    Column("phase", String(8), nullable=False),
    Column("phases", Integer, nullable=False, default=0),
    Column("start", DateTime, nullable=False),
    Column("end", DateTime),
    Column("duration_s", Float),
    Column("score", Float),
    Column("classes", JSON),
    Column("box", JSON),
    Column("snapshot", Boolean, nullable=False, default=False),
    Column("snapshot_sha", String(64)),
    #: appearance attributes computed on the node (named colours, sides of the frame)
    Column("colour_upper", String(16)),
    Column("colour_lower", String(16)),
    Column("colour_body", String(16)),
    Column("entry_side", String(8)),
    Column("exit_side", String(8)),
    #: the latest payload as received (unknown fields kept)
    Column("payload", JSON, nullable=False),
    Column("messages", Integer, nullable=False, default=1),
    Column("received", DateTime, nullable=False),
    Index("ix_events_start", "start"),
    Index("ix_events_node_start", "node", "start"),
    Index("ix_events_label_start", "label", "start"),
    Index("ix_events_colour_upper", "colour_upper", "start"),
    Index("ix_events_colour_lower", "colour_lower", "start"),
    Index("ix_events_colour_body", "colour_body", "start"),
    # class + colour searches walk these in time order (bench/bench_search.py)
    Index("ix_events_label_body", "label", "colour_body", "start"),
    Index("ix_events_label_upper", "label", "colour_upper", "start"),
    Index("ix_events_label_lower", "label", "colour_lower", "start"),
)

#: JPEGs are files named by their SHA-256 (``<media>/<aa>/<sha>.jpg``); this is the reference
snapshots = Table(
    "snapshots", metadata,
    Column("event_id", String(96), primary_key=True),
    Column("node", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("received", DateTime, nullable=False),
)

#: one row per node per minute, plus one at every change of faults
heartbeats = Table(
    "heartbeats", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("node", String(64), nullable=False),
    Column("utc", DateTime, nullable=False),
    Column("faults", JSON, nullable=False, default=dict),
    Column("payload", JSON, nullable=False),
    Index("ix_heartbeats_node_utc", "node", "utc"),
)

status_changes = Table(
    "status_changes", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("node", String(64), nullable=False),
    Column("utc", DateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(64), nullable=False, default=""),
    Column("received", DateTime, nullable=False),
    UniqueConstraint("node", "utc", "state", name="uq_status_node_utc_state"),
)

#: a node's "lost" notices: events its bounded outbox had to drop (which, how many, why)
lost_notices = Table(
    "lost_notices", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("node", String(64), nullable=False),
    Column("notice", String(96), nullable=False),
    Column("count", Integer, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("received", DateTime, nullable=False),
    UniqueConstraint("node", "notice", name="uq_lost_node_notice"),
)

#: forwarding rules: events of these classes on these poles in these hours → webhook or command
rules = Table(
    "rules", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("classes", JSON, nullable=False, default=list),  # [] = every class
    Column("poles", JSON, nullable=False, default=list),  # [] = every pole
    #: local time window "HH:MM-HH:MM" in ``tz`` (may wrap midnight); "" = always
    Column("hours", String(16), nullable=False, default=""),
    Column("tz", String(64), nullable=False, default="UTC"),
    Column("action", String(16), nullable=False),  # "webhook" | "command"
    #: webhook: URL; command: "<node or *>/<command name>" (* = the event's own pole)
    Column("target", String(512), nullable=False),
    Column("args", JSON, nullable=False, default=dict),  # command arguments
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created", DateTime, nullable=False),
)

#: every rule hit (once per rule and event) and how forwarding went
rule_hits = Table(
    "rule_hits", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("rule_id", Integer, nullable=False),
    Column("event_id", String(96), nullable=False),
    Column("node", String(64), nullable=False),
    Column("hit", DateTime, nullable=False),
    Column("outcome", String(256)),
    Column("done", DateTime),
    UniqueConstraint("rule_id", "event_id", name="uq_rule_hits_rule_event"),
)

#: audit: every command sent from the station (who, what, when) and the node's reply
commands = Table(
    "commands", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request", String(64)),
    Column("node", String(64), nullable=False),
    Column("command", String(32), nullable=False),
    Column("actor", String(64), nullable=False, default=""),
    Column("sent", DateTime),
    Column("args", JSON),
    Column("reply", JSON),
    Column("replied", DateTime),
    Index("ix_commands_node_request", "node", "request"),
)

# --- the web console's own tables (revision 0005 took over those earlier consoles made) ---

console_users = Table(
    "console_users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    # bumped on password change / deactivation: every older session of the user ends
    Column("session_epoch", Integer, nullable=False, default=0),
    Column("created_utc", DateTime(timezone=True), nullable=False),
)

console_login_failures = Table(
    "console_login_failures", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, index=True),
    Column("address", String(64), nullable=False, index=True),
    Column("at_utc", DateTime(timezone=True), nullable=False, index=True),
)

console_audit = Table(
    "console_audit", metadata,
    Column("id", Integer, primary_key=True),
    Column("at_utc", DateTime(timezone=True), nullable=False, index=True),
    Column("username", String(64), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("action", String(32), nullable=False, index=True),
    Column("target", String(256), nullable=False, default=""),
    Column("allowed", Boolean, nullable=False),
    Column("address", String(64), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
)

console_acks = Table(
    "console_alert_acks", metadata,
    Column("event_id", String(128), primary_key=True),
    Column("node_id", String(64), nullable=False),
    Column("username", String(64), nullable=False),
    Column("at_utc", DateTime(timezone=True), nullable=False),
)

