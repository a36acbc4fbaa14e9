"""A durable queue for the messages the station must not miss (events, snapshots).

paho keeps unacknowledged QoS 1 messages in memory only: a broker outage followed by a power
cut loses them. Here every durable message is first written to SQLite (WAL; :meth:`put` commits with
``synchronous=FULL``: a row is on the card before it is published, so a power cut cannot take
back a message the node has queued — with ``NORMAL`` it lost the last seconds of them, an
event's ``end`` among them; the rest, deletes included, is ``NORMAL``: a delete a cut takes back
only sends the row again), published when the link is up, and deleted when it is acknowledged: by the
station's archive after its database commit (rows put with a ``key``, :meth:`acknowledge`), or
by the broker's PUBACK (rows without one, :meth:`done`).
Delivery is at-least-once: after a crash between acknowledgement and delete the message is sent
again, so consumers de-duplicate by the event ``id``.

Sending is claim-based: :meth:`claim` hands out the oldest rows nobody is sending and marks them
in flight; a row stays claimed until :meth:`done` deletes it or :meth:`release` gives it back.
Both happen under one lock, so a row is never "no longer in flight but not yet deleted" — the
window in which a second sender used to publish it again (issue 8, item 22).

The queue is bounded (``max_rows``, ``max_bytes``, ``max_age_s``): a node cut off for weeks
must not fill its card with alerts. Dropped rows are never silent: the total is persisted, and
a ``lost`` notice (one row, kept out of trimming, merged while unsent) names what was dropped:
the range of queue sequence numbers, the event ids, the times, and why (``full`` or ``age``).

Thread: any (one connection guarded by a lock). Cost: one small synced INSERT per message
(events and snapshots: a few a minute at most), an unsynced DELETE per acknowledgement.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Most event ids one ``lost`` notice lists (the count and the sequence range cover the rest).
LOST_EVENT_IDS = 200

MSG, LOST = "msg", "lost"


class Outbox:
    def __init__(self, path: str | Path, *, max_rows: int = 5000, max_bytes: int = 64 << 20,
                 max_age_s: float = 0.0, clock: Any = None, lost_topic: str = "") -> None:
        """``max_age_s`` 0: no age limit. ``lost_topic``: where ``lost`` notices go (empty: the
        drops are counted but no notice is queued). ``clock``: ``utc()`` for the queue times."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows, self.max_bytes, self.max_age_s = max_rows, max_bytes, max_age_s
        self.lost_topic = lost_topic
        self._clock = clock
        self._lock = threading.Lock()
        self._claimed: set[int] = set()
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            msg = str(exc).lower()
            if "not a database" not in msg and "malformed" not in msg:
                raise  # locked, unreadable, disk full: the caller reports it; the file stays
            # a corrupt outbox must not stop the node: keep it (and its WAL) aside, start empty
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.replace(Path(f"{self.path.with_suffix('.corrupt')}{suffix}"))
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL)")
        columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        if "created" not in columns:  # a queue written by an older version: its rows count as new
            db.execute("ALTER TABLE outbox ADD COLUMN created REAL NOT NULL DEFAULT 0")
        if "kind" not in columns:
            db.execute(f"ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT '{MSG}'")
        if "key" not in columns:  # what the station's archive acknowledgement names (event id+phase)
            db.execute("ALTER TABLE outbox ADD COLUMN key TEXT")
        db.execute("CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key)")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        db.execute("SELECT count(*) FROM outbox").fetchone()
        return db

    def _now(self) -> float:
        return (self._clock.utc() if self._clock is not None else datetime.now(UTC)).timestamp()

    # -- queueing ------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int = 1, key: str | None = None) -> int:
        """Queue a message; ``key`` (``event/<id>/<phase>``, ``snapshot/<id>``): the row waits for
        the archive's acknowledgement of that key (:meth:`acknowledge`), not for :meth:`done`."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")  # on the card before it can be published
            try:
                with self._transaction():
                    cur = self._db.execute(
                        "INSERT INTO outbox (topic, payload, qos, created, kind, key) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (topic, payload, qos, self._now(), MSG, key))
                    self._trim()
                    return int(cur.lastrowid or 0)
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def expire(self) -> int:
        """Drop rows older than ``max_age_s`` now (also done by :meth:`put` and :meth:`claim`)."""
        with self._lock, self._transaction():
            return self._trim()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _trim(self) -> int:
        """Drop the oldest unsent rows beyond the bounds; record them in a ``lost`` notice."""
        n, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox WHERE kind = ?",
            (MSG,)).fetchone()
        cutoff = self._now() - self.max_age_s if self.max_age_s > 0 else None
        victims: list[tuple[int, str, float, str]] = []
        reasons: set[str] = set()
        rows = self._db.execute("SELECT id, topic, length(payload), created FROM outbox "
                                "WHERE kind = ? ORDER BY id", (MSG,))
        for row_id, topic, length, created in rows:
            if row_id in self._claimed:  # being sent: not ours to drop
                continue
            over = n > self.max_rows or (size > self.max_bytes and n > 1)
            old = cutoff is not None and 0 < created < cutoff
            if not (over or old):
                break
            reasons.add("full" if over else "age")
            victims.append((row_id, topic, created, "full" if over else "age"))
            n, size = n - 1, size - length
        rows.close()
        if not victims:
            return 0
        ids = [v[0] for v in victims]
        events = self._event_ids(ids)
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
        total = self._add_dropped(len(ids))
        if self.lost_topic:
            self._note_lost(ids, events, [v[2] for v in victims], reasons, total)
        return len(ids)

    def _event_ids(self, ids: list[int]) -> list[str]:
        """The event ids of rows about to be dropped (event JSON, or the snapshot topic)."""
        out: list[str] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for topic, payload in self._db.execute(
                    f"SELECT topic, payload FROM outbox WHERE id IN ({marks}) ORDER BY id", chunk):
                eid = _event_id(topic, payload)
                if eid and eid not in out:
                    out.append(eid)
        return out

    def _add_dropped(self, n: int) -> int:
        self._db.execute("INSERT INTO meta (key, value) VALUES ('dropped', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (n,))
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0])

    def _note_lost(self, ids: list[int], events: list[str], created: list[float],
                   reasons: set[str], total: int) -> None:
        """Merge into the unsent ``lost`` notice, or queue a new one."""
        notice: dict[str, Any] = {"count": 0, "first_seq": min(ids), "last_seq": max(ids),
                                  "events": [], "events_omitted": 0, "reasons": []}
        prior = [(r, p) for r, p in self._db.execute(
            "SELECT id, payload FROM outbox WHERE kind = ? ORDER BY id DESC", (LOST,))
            if r not in self._claimed][:1]
        if prior:
            notice = json.loads(prior[0][1])
        known = set(notice["events"])
        fresh = [e for e in events if e not in known]
        room = max(0, LOST_EVENT_IDS - len(notice["events"]))
        times = [t for t in created if t > 0]
        notice.update(
            count=notice["count"] + len(ids),
            first_seq=min(notice["first_seq"], min(ids)), last_seq=max(notice["last_seq"], max(ids)),
            events=notice["events"] + fresh[:room],
            events_omitted=notice["events_omitted"] + max(0, len(fresh) - room),
            reasons=sorted(set(notice["reasons"]) | reasons), dropped_total=total, phase="lost")
        if times:
            notice["first_queued"] = min([notice.get("first_queued") or _iso(min(times)), _iso(min(times))])
            notice["last_queued"] = max([notice.get("last_queued") or _iso(max(times)), _iso(max(times))])
        notice["id"] = f"lost-{notice['first_seq']}-{notice['last_seq']}"
        notice["utc"] = _iso(self._now())
        data = json.dumps(notice, separators=(",", ":"), sort_keys=True).encode()
        if prior:
            self._db.execute("UPDATE outbox SET payload = ? WHERE id = ?", (data, prior[0][0]))
        else:
            self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, created, kind) VALUES (?, ?, 1, ?, ?)",
                (self.lost_topic, data, self._now(), LOST))

    # -- sending -------------------------------------------------------------------
    def claim(self, limit: int = 100) -> list[tuple]:
        """Oldest first, rows nobody is sending: ``(id, topic, payload, qos)``, now in flight.

        Expired rows are dropped first (a stale event is replaced by its ``lost`` notice)."""
        with self._lock:
            with self._transaction():
                self._trim()
            rows = self._db.execute("SELECT id, topic, payload, qos FROM outbox ORDER BY id LIMIT ?",
                                    (limit + len(self._claimed),)).fetchall()
            out = [r for r in rows if r[0] not in self._claimed][:limit]
            self._claimed.update(r[0] for r in out)
            return out

    def release(self, row_ids: Iterable[int]) -> None:
        """Rows that were not sent after all (link down, temporary refusal): claimable again."""
        with self._lock:
            self._claimed.difference_update(row_ids)

    def done(self, row_id: int) -> None:
        """Delivered: delete the row (and only then stop counting it in flight)."""
        with self._lock:
            try:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            finally:  # deleted, or (failing card) left for a later resend
                self._claimed.discard(row_id)

    def acknowledge(self, key: str, upto: int | None = None) -> list[int]:
        """The archive committed ``key``: delete its rows (those up to row id ``upto`` when given:
        a newer row of the same key was not yet seen by the archive); returns their ids."""
        with self._lock:
            if upto is None:
                cur = self._db.execute("DELETE FROM outbox WHERE key = ? RETURNING id", (key,))
            else:
                cur = self._db.execute("DELETE FROM outbox WHERE key = ? AND id <= ? RETURNING id",
                                       (key, upto))
            gone = [r[0] for r in cur.fetchall()]
            self._claimed.difference_update(gone)
            return gone

    def key_of(self, row_id: int) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT key FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return None if row is None else row[0]

    def in_flight(self) -> int:
        with self._lock:
            return len(self._claimed)

    # -- reading -------------------------------------------------------------------
    def pending(self, limit: int = 100, exclude: set[int] | frozenset[int] = frozenset()) -> list[tuple]:
        """Oldest first: ``(id, topic, payload, qos)``, skipping ``exclude`` (read only)."""
        with self._lock:
            rows = self._db.execute("SELECT id, topic, payload, qos FROM outbox ORDER BY id LIMIT ?",
                                    (limit + len(exclude),)).fetchall()
        return [r for r in rows if r[0] not in exclude][:limit]

    @property
    def dropped(self) -> int:
        """Rows dropped by the bounds since the queue was created (persisted)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return int(row[0]) if row else 0

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *_: Any) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _event_id(topic: str, payload: bytes) -> str:
    if "/snapshot/" in topic:
        return topic.rsplit("/", 1)[-1]
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(obj.get("id", "")) if isinstance(obj, dict) else ""


def _iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
