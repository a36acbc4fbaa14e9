"""Node messages → archive rows: validated, idempotent, merging.

``Ingestor.apply(batch)`` takes ``(topic, payload)`` pairs as they came off the broker, writes
them in one transaction, and returns the acknowledgements to publish *after* that commit
(``Ack(node, leaf, body)``: ``ack/event`` ``{"id", "phase"}``, ``ack/snapshot`` ``{"id"}``).

* **Events** are keyed by ``id``: the first message inserts the row, later ones merge — a
  later phase (start < update < end) overwrites, an earlier or repeated one only fills what is
  missing. A repeated ``id`` + ``phase`` (the node resends until it sees the ack) is counted
  as a duplicate and acknowledged again; an ``id`` already archived for *another* node is
  refused.
* **Snapshots** are files named by their SHA-256 under ``media_dir``; the row references the
  event (a snapshot that beats its event, or whose event never comes, is kept and counted
  ``orphan_snapshot``).
* **Heartbeats**: one row per node per minute, plus one at every change of faults.
* **Status**: one row per transition (the retained message is not stored twice).
* **Replies** complete the audit row of the command they answer (matched by request id).

Bad input (not JSON, oversized, missing/ill-typed fields, a payload naming another node) is
refused: counted in ``stats`` under a reason, logged once per (reason, node), never written.
Per batch the database work is bulk: the event messages between two snapshots are validated
first, their archived rows loaded with one ``SELECT … WHERE id IN (…)``, merged in Python by the
rules above (message by message, in order), then written with one multi-row
``INSERT … ON CONFLICT DO NOTHING`` and one executemany ``UPDATE``; heartbeats go in with one
executemany ``INSERT``. An id a peer service inserted between that SELECT and the INSERT is
loaded again and its messages merged into the peer's row.

Thread: one caller at a time (the service's writer thread).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from node.link import topics as t
from station.archive.db import writing
from station.archive.schema import (
    PHASE_RANK,
    commands,
    events,
    heartbeats,
    lost_notices,
    snapshots,
    status_changes,
)

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 64 * 1024
#: The largest magnitude a numeric field may have (scores, durations: far below it).
MAX_NUMBER = 1e12
MAX_SNAPSHOT_BYTES = 4 << 20
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,95}$")
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_COLOUR = re.compile(r"^[a-z]{1,16}$")
_SIDES = {"left", "right", "top", "bottom", "inside"}
PHASE_BIT = {"start": 1, "update": 2, "end": 4}
#: event columns a merge may write (all but the key, the owner and the bookkeeping)
_MERGED = ("kind", "label", "phase", "phases", "start", "end", "duration_s", "score", "classes", "box",
           "snapshot", "colour_upper", "colour_lower", "colour_body", "entry_side", "exit_side",
           "payload")


class Refused(ValueError):
    """A message the archive does not take; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Ack:
    node: str
    leaf: str  # "event" | "snapshot"
    body: dict[str, str]


@dataclass
class Stats:
    archived: Counter = field(default_factory=Counter)
    duplicates: int = 0
    refused: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"archived": dict(self.archived), "duplicates": self.duplicates,
                "refused": dict(self.refused)}


def parse_utc(value: Any, name: str) -> datetime:
    """ISO 8601 with a zone (``Z`` or offset) → naive UTC."""
    if not isinstance(value, str) or len(value) > 40:
        raise Refused("bad_field", f"{name} must be an ISO 8601 time, got {value!r:.60}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Refused("bad_field", f"{name} is not an ISO 8601 time: {value!r:.60}") from None
    if ts.tzinfo is None:
        raise Refused("bad_field", f"{name} has no time zone: {value!r:.60}")
    try:
        return ts.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise Refused("bad_field", f"{name} is out of range: {value!r:.60}") from None


def _opt_str(p: dict, key: str, limit: int, pattern: re.Pattern | None = None) -> str | None:
    v = p.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > limit or (pattern is not None and not pattern.match(v)):
        raise Refused("bad_field", f"{key} must be a short string, got {v!r:.60}")
    return v


def _opt_num(p: dict, key: str) -> float | None:
    v = p.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise Refused("bad_field", f"{key} must be a number, got {v!r:.60}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f) or abs(f) > MAX_NUMBER:
        raise Refused("bad_field", f"{key} must be a finite number within ±{MAX_NUMBER:g}, got {str(v)[:60]}")
    return f


def event_row(node: str, p: dict[str, Any]) -> dict[str, Any]:
    """Validate an event payload; the columns it sets (``None``: not stated)."""
    eid = p.get("id")
    if not isinstance(eid, str) or not _ID.match(eid):
        raise Refused("bad_field", f"id must match {_ID.pattern}, got {eid!r:.60}")
    phase = p.get("phase")
    if phase not in PHASE_RANK:
        raise Refused("bad_field", f"phase must be start, update or end, got {phase!r:.20}")
    kind = _opt_str(p, "kind", 16)
    if not kind:
        raise Refused("bad_field", "kind missing")
    app = p.get("appearance") if isinstance(p.get("appearance"), dict) else {}
    colours = app.get("colours") if isinstance(app.get("colours"), dict) else {}
    row = {
        "id": eid, "node": node, "kind": kind, "phase": phase,
        "label": _opt_str(p, "label", 32) or "",
        "start": parse_utc(p.get("start"), "start"),
        "end": None if p.get("end") is None else parse_utc(p.get("end"), "end"),
        "duration_s": _opt_num(p, "duration_s"),
        "score": _opt_num(p, "score"),
        "classes": p.get("classes") if isinstance(p.get("classes"), list) else None,
        "box": p.get("box") if isinstance(p.get("box"), list) else None,
        "snapshot": bool(p.get("snapshot")),
        "colour_upper": _opt_str(colours, "upper", 16, _COLOUR),
        "colour_lower": _opt_str(colours, "lower", 16, _COLOUR),
        "colour_body": _opt_str(colours, "body", 16, _COLOUR),
        "entry_side": _opt_str(app, "entry", 8),
        "exit_side": _opt_str(app, "exit", 8),
        "payload": p,
    }
    for side in ("entry_side", "exit_side"):
        if row[side] is not None and row[side] not in _SIDES:
            raise Refused("bad_field", f"{side} must be one of {sorted(_SIDES)}, got {row[side]!r}")
    return row


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Columns to update when ``new`` (a validated event row) arrives for the archived ``old``."""
    later = PHASE_RANK[new["phase"]] >= PHASE_RANK[old["phase"]]
    out: dict[str, Any] = {}
    for k, v in new.items():
        if k in ("id", "node", "phase", "payload"):
            continue
        if v is None:
            continue
        if later or old.get(k) is None:
            out[k] = v
    if later:
        out["phase"] = new["phase"]
        out["payload"] = {**(old.get("payload") or {}), **new["payload"]}
    out["phases"] = (old.get("phases") or 0) | PHASE_BIT[new["phase"]]
    return out


def media_path(media_dir: Path, sha: str) -> Path:
    """Where the archive keeps the snapshot whose SHA-256 (hex) is ``sha``: one folder per
    first two hex digits."""
    return Path(media_dir) / sha[:2] / f"{sha}.jpg"


class Ingestor:
    def __init__(self, engine: Engine, prefix: str, media_dir: Path, clock) -> None:
        self.engine = engine
        self.prefix = prefix
        self.media_dir = Path(media_dir)
        self.clock = clock
        self.stats = Stats()
        self._logged: set[tuple[str, str]] = set()
        self._last_beat: dict[str, tuple[datetime, Any]] = {}
        self._pg = engine.dialect.name == "postgresql"
        #: events archived for the first time by the last :meth:`apply` (for the rules)
        self.fresh: list[dict[str, Any]] = []

    # -- public ------------------------------------------------------------------------
    def apply(self, batch: Iterable[tuple[str, bytes]]) -> list[Ack]:
        """Archive a batch in one transaction; on a database error retry message by message.

        Raises ``OperationalError``/``InterfaceError`` (unreachable, locked): nothing of the batch
        is written then, and the caller must not acknowledge it."""
        items = list(batch)
        self.fresh = []
        # what a batch changes besides the database goes back with its rollback: a retry must
        # not take its heartbeats for ones already kept, nor count its messages twice
        beats, stats = dict(self._last_beat), copy.deepcopy(self.stats)
        try:
            try:
                with writing(self.engine) as conn:
                    return self._write(conn, items)
            except BaseException:
                self._last_beat, self.stats = beats, stats
                raise
        except (OperationalError, InterfaceError):
            raise  # the database is unreachable or busy: the caller keeps the batch and retries
        except SQLAlchemyError as exc:
            if len(items) == 1:
                self._refuse("database", items[0][0], str(getattr(exc, "orig", exc)).splitlines()[0])
                return []
        except Exception as exc:  # a message this code did not foresee: never stop the archive
            if len(items) == 1:
                self._refuse("internal", items[0][0], f"{type(exc).__name__}: {exc}", traceback=True)
                return []
        acks: list[Ack] = []
        fresh: list[dict[str, Any]] = []
        for item in items:
            acks += self.apply([item])
            fresh += self.fresh
        self.fresh = fresh
        return acks

    def _write(self, conn, items: list[tuple[str, bytes]]) -> list[Ack]:
        """The batch in one open transaction: events and heartbeats gathered, written in bulk."""
        self._events: list[tuple[str, str, dict[str, Any]]] = []  # (topic, node, validated row)
        self._beats: list[dict[str, Any]] = []
        acks = [a for topic, data in items for a in self._one(conn, topic, data)]
        acks += self._flush_events(conn)
        if self._beats:
            conn.execute(insert(heartbeats), self._beats)
        return acks

    # -- dispatch ------------------------------------------------------------------------
    def _one(self, conn, topic: str, data: bytes) -> list[Ack]:
        try:
            prefix, node, leaf = t.split_topic(topic)
            if prefix != self.prefix or not _NODE.match(node):
                raise Refused("bad_topic", "not <prefix>/<node id>/...")
            if leaf.startswith("snapshot/"):  # it may name an event gathered before it
                return self._flush_events(conn) + self._snapshot(conn, node, leaf[len("snapshot/"):], data)
            if leaf.startswith("clip/") and not leaf.endswith("/done"):
                return []  # clip chunks belong to whoever asked for the clip
            payload = self._json(data)
            if leaf == "event":
                self._events.append((topic, node, event_row(node, payload)))
                return []
            if leaf == "heartbeat":
                self._heartbeat(conn, node, payload)
            elif leaf == "status":
                self._status(conn, node, payload)
            elif leaf == "lost":
                self._lost(conn, node, payload)
            elif leaf.startswith("cmd/"):
                self._command(conn, node, leaf[4:], payload)
            elif leaf.startswith("reply/") or leaf.endswith("/done"):
                self._reply(conn, node, leaf, payload)
            else:
                raise Refused("unknown_topic", leaf)
            return []
        except Refused as exc:
            self._refuse(exc.reason, topic, str(exc))
            return []

    def _refuse(self, reason: str, topic: str, detail: str, traceback: bool = False) -> None:
        self.stats.refused[reason] += 1
        parts = topic.split("/")
        key = (reason, parts[1] if len(parts) > 1 else topic)
        if key not in self._logged:  # once per (reason, node): a flood does not flood the log
            self._logged.add(key)
            log.warning("refused message on %s (%s); further ones like it are only counted",
                        topic, detail[:200], exc_info=traceback)

    def _json(self, data: bytes) -> dict[str, Any]:
        if len(data) > MAX_JSON_BYTES:
            raise Refused("oversized", f"{len(data)} bytes > {MAX_JSON_BYTES}")
        try:
            return t.decode(data, limit=MAX_JSON_BYTES)
        except ValueError as exc:
            raise Refused("malformed", str(exc)) from None

    # -- events ------------------------------------------------------------------------------
    def _flush_events(self, conn) -> list[Ack]:
        """Archive the gathered event messages: one SELECT, merge in Python, one INSERT, one
        UPDATE (again for any id a peer inserted meanwhile)."""
        todo, self._events = self._events, []
        acks: list[Ack] = []
        while todo:
            ids = sorted({row["id"] for _, _, row in todo})
            stmt = select(events).where(events.c.id.in_(ids))
            if self._pg:
                stmt = stmt.with_for_update()
            state = {r["id"]: dict(r) for r in conn.execute(stmt).mappings()}
            missing = [i for i in ids if i not in state]
            snaps = {r.event_id: r for r in conn.execute(
                select(snapshots.c.event_id, snapshots.c.sha256, snapshots.c.node)
                .where(snapshots.c.event_id.in_(missing)))} if missing else {}
            now = self.clock.utc().replace(tzinfo=None)
            new: dict[str, dict[str, Any]] = {}
            added: dict[str, int] = {}  # id → messages merged into an archived row
            outcome: list[str | Refused] = []
            for _topic, node, row in todo:
                eid = row["id"]
                old = state.get(eid)
                if old is None:
                    snap = snaps.get(eid)
                    state[eid] = new[eid] = {
                        **row, "phases": PHASE_BIT[row["phase"]], "messages": 1, "received": now,
                        "snapshot_sha": snap.sha256 if snap is not None and snap.node == node else None}
                    outcome.append("new")
                elif old["node"] != node:
                    outcome.append(Refused("foreign_id", f"event {eid} is archived for node {old['node']}"))
                elif old["phases"] & PHASE_BIT[row["phase"]] and row["phase"] != "update":
                    outcome.append("duplicate")
                else:
                    old.update(merge(old, row))
                    old["messages"] += 1
                    if eid not in new:
                        added[eid] = added.get(eid, 0) + 1
                    outcome.append("merged")
            raced = set(new) - self._insert_events(conn, list(new.values()))
            self._update_events(conn, [(state[i], n) for i, n in added.items() if i not in raced])
            later = []
            for (topic, node, row), out in zip(todo, outcome, strict=True):
                if row["id"] in raced:  # a peer archived it after our SELECT: merge into its row
                    later.append((topic, node, row))
                elif isinstance(out, Refused):
                    self._refuse(out.reason, topic, str(out))
                else:
                    acks.append(Ack(node, "event", {"id": row["id"], "phase": row["phase"]}))
                    if out == "duplicate":
                        self.stats.duplicates += 1
                        continue
                    self.stats.archived["event"] += 1
                    if out == "new":
                        self.fresh.append({k: row[k] for k in ("id", "node", "kind", "label", "start")})
            todo = later
        return acks

    def _insert_events(self, conn, rows: list[dict[str, Any]]) -> set[str]:
        """One multi-row insert; the ids it inserted (not those a peer holds already)."""
        if not rows:
            return set()
        dialect_insert = postgresql.insert if self._pg else sqlite.insert
        stmt = dialect_insert(events).on_conflict_do_nothing(index_elements=["id"]).returning(events.c.id)
        return {r.id for r in conn.execute(stmt, rows)}

    def _update_events(self, conn, merged: list[tuple[dict[str, Any], int]]) -> None:
        """One executemany UPDATE: each archived row's merged columns, ``messages`` + the count."""
        if not merged:
            return
        stmt = (update(events).where(events.c.id == bindparam("b_id"))
                .values({**{events.c[k]: bindparam(f"b_{k}") for k in _MERGED},
                         events.c.messages: events.c.messages + bindparam("b_count")}))
        conn.execute(stmt, [{"b_id": row["id"], "b_count": n, **{f"b_{k}": row[k] for k in _MERGED}}
                            for row, n in merged])

    # -- snapshots -------------------------------------------------------------------------
    def _snapshot(self, conn, node: str, event_id: str, data: bytes) -> list[Ack]:
        if not _ID.match(event_id):
            raise Refused("bad_topic", f"snapshot id {event_id!r:.60}")
        if len(data) > MAX_SNAPSHOT_BYTES:
            raise Refused("oversized", f"snapshot of {len(data)} bytes > {MAX_SNAPSHOT_BYTES}")
        if not data.startswith(b"\xff\xd8"):
            raise Refused("malformed", "snapshot is not a JPEG")
        ack = [Ack(node, "snapshot", {"id": event_id})]
        have = conn.execute(select(snapshots.c.node, snapshots.c.sha256)
                            .where(snapshots.c.event_id == event_id)).first()
        sha = hashlib.sha256(data).hexdigest()
        if have is not None:
            if have.node != node:
                raise Refused("foreign_id", f"snapshot {event_id} is archived for node {have.node}")
            self.stats.duplicates += 1
            return ack
        ev = conn.execute(select(events.c.node).where(events.c.id == event_id)).first()
        if ev is not None and ev.node != node:
            raise Refused("foreign_id", f"event {event_id} is archived for node {ev.node}")
        self._write_media(sha, data)
        conn.execute(insert(snapshots).values(event_id=event_id, node=node, sha256=sha, bytes=len(data),
                                              received=self.clock.utc().replace(tzinfo=None)))
        if ev is None:
            self.stats.refused["orphan_snapshot"] += 1  # kept: its event may still come
        else:
            conn.execute(update(events).where(events.c.id == event_id).values(snapshot_sha=sha))
        self.stats.archived["snapshot"] += 1
        return ack

    def snapshot_path(self, sha: str) -> Path:
        return media_path(self.media_dir, sha)

    def _write_media(self, sha: str, data: bytes) -> None:
        path = self.snapshot_path(sha)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)

    # -- heartbeats, status, replies ---------------------------------------------------------
    def _claimed_node(self, node: str, p: dict[str, Any]) -> None:
        claimed = p.get("node_id")
        if claimed is not None and claimed != node:
            raise Refused("foreign_id", f"payload of node {claimed!r:.64} on {node}'s topic")

    def _heartbeat(self, conn, node: str, p: dict[str, Any]) -> None:
        self._claimed_node(node, p)
        utc = parse_utc(p.get("utc"), "utc")
        faults = p.get("faults") if isinstance(p.get("faults"), dict) else {}
        minute = utc.replace(second=0, microsecond=0)
        last = self._last_beat.get(node)
        if last is not None and last[0] == minute and last[1] == faults:
            return
        self._last_beat[node] = (minute, faults)
        self._beats.append({"node": node, "utc": utc, "faults": faults, "payload": p})
        self.stats.archived["heartbeat"] += 1

    def _status(self, conn, node: str, p: dict[str, Any]) -> None:
        state = p.get("state")
        if state not in ("online", "offline"):
            raise Refused("bad_field", f"state must be online or offline, got {state!r:.20}")
        utc = parse_utc(p.get("utc"), "utc")
        reason = _opt_str(p, "reason", 64) or ""
        seen = conn.execute(select(status_changes.c.id).where(
            status_changes.c.node == node, status_changes.c.utc == utc,
            status_changes.c.state == state)).first()
        if seen is None:
            conn.execute(insert(status_changes).values(
                node=node, utc=utc, state=state, reason=reason,
                received=self.clock.utc().replace(tzinfo=None)))
            self.stats.archived["status"] += 1

    def _lost(self, conn, node: str, p: dict[str, Any]) -> None:
        notice = p.get("id")
        count = p.get("count")
        if not isinstance(notice, str) or not _ID.match(notice) or not isinstance(count, int) \
                or isinstance(count, bool) or not 0 <= count < 2 ** 31:
            raise Refused("bad_field", "a lost notice needs an id and a count (0 to 2^31)")
        seen = conn.execute(select(lost_notices.c.id).where(lost_notices.c.node == node,
                                                            lost_notices.c.notice == notice)).first()
        if seen is None:
            conn.execute(insert(lost_notices).values(node=node, notice=notice, count=count, payload=p,
                                                     received=self.clock.utc().replace(tzinfo=None)))
            self.stats.archived["lost"] += 1
            log.warning("node %s dropped %d queued message(s) (%s)", node, count, notice)
        else:
            self.stats.duplicates += 1

    def _command(self, conn, node: str, name: str, p: dict[str, Any]) -> None:
        """A command someone sent to a node (console, technician, rule): what, to whom, when —
        and who, when the sender names itself (``actor``). One row per request id."""
        if not re.fullmatch(r"[a-z][a-z_]{0,31}", name):
            raise Refused("bad_topic", f"command name {name!r:.40}")
        request = p.get("id") if isinstance(p.get("id"), str) else None
        if request:
            seen = conn.execute(select(commands.c.id).where(commands.c.node == node,
                                                            commands.c.request == request[:64])).first()
            if seen is not None:  # the sender wrote its own audit row (evidence, rules)
                return
        actor = p.get("actor") if isinstance(p.get("actor"), str) else ""
        conn.execute(insert(commands).values(request=(request or "")[:64] or None, node=node, command=name,
                                             actor=actor[:64], args=p,
                                             sent=self.clock.utc().replace(tzinfo=None)))
        self.stats.archived["command"] += 1

    def _reply(self, conn, node: str, leaf: str, p: dict[str, Any]) -> None:
        name = leaf.split("/", 1)[1] if leaf.startswith("reply/") else "clip"
        request = p.get("id") if isinstance(p.get("id"), str) else None
        if leaf.startswith("clip/"):
            request = leaf.split("/")[1]
        now = self.clock.utc().replace(tzinfo=None)
        if request:
            res = conn.execute(update(commands).where(
                commands.c.node == node, commands.c.request == request[:64],
                commands.c.reply.is_(None)).values(reply=p, replied=now))
            if res.rowcount:
                self.stats.archived["reply"] += 1
                return
        conn.execute(insert(commands).values(request=(request or "")[:64] or None, node=node,
                                             command=name[:32], actor="", reply=p, replied=now))
        self.stats.archived["reply"] += 1
