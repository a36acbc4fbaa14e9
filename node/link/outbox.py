"""A durable queue for the messages the station must not miss (events, snapshots).

paho keeps unacknowledged QoS 1 messages in memory only: a broker outage followed by a power
cut loses them. Here every durable message is first written to SQLite (WAL, ``synchronous=
NORMAL``: an acknowledged row survives a process crash; a power cut can lose at most the last
transaction), published when the link is up, and deleted when the station's archive
acknowledges it (``acknowledge(key)``; ``key`` names the event id + phase or the snapshot) —
or, for messages without a key or with ``mqtt.archive_ack`` off, when the broker's PUBACK
arrives (``done(row id)``). Delivery is at-least-once: the archive de-duplicates by the event
``id`` + ``phase``.

The queue is bounded (``max_rows``, ``max_bytes``): when full, the oldest rows are dropped and
counted — a node cut off for weeks must not fill its card with alerts.

Thread: any (one connection guarded by a lock). Cost: one small INSERT per message.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Outbox:
    def __init__(self, path: str | Path, *, max_rows: int = 5000, max_bytes: int = 64 << 20) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self._lock = threading.Lock()
        self.dropped = 0
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
        if "key" not in columns:  # outbox written by a node older than archive acknowledgements
            db.execute("ALTER TABLE outbox ADD COLUMN key TEXT")
        db.execute("CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key)")
        db.execute("SELECT count(*) FROM outbox").fetchone()
        return db

    def put(self, topic: str, payload: bytes, qos: int = 1, key: str | None = None) -> int:
        with self._lock:
            cur = self._db.execute("INSERT INTO outbox (topic, payload, qos, key) VALUES (?, ?, ?, ?)",
                                   (topic, payload, qos, key))
            self._trim()
            return int(cur.lastrowid or 0)

    def _trim(self) -> None:
        n, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox").fetchone()
        while n > self.max_rows or (size > self.max_bytes and n > 1):
            row = self._db.execute("SELECT id, length(payload) FROM outbox ORDER BY id LIMIT 1").fetchone()
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
            n, size = n - 1, size - row[1]
            self.dropped += 1

    def pending(self, limit: int = 100, exclude: set[int] | frozenset[int] = frozenset()) -> list[tuple]:
        """Oldest first: ``(id, topic, payload, qos)``, skipping ids already in flight."""
        with self._lock:
            rows = self._db.execute("SELECT id, topic, payload, qos FROM outbox ORDER BY id LIMIT ?",
                                    (limit + len(exclude),)).fetchall()
        return [r for r in rows if r[0] not in exclude][:limit]

    def key_of(self, row_id: int) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT key FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return None if row is None else row[0]

    def acknowledge(self, key: str, upto: int | None = None) -> list[int]:
        """Delete the rows named ``key`` (those up to row id ``upto`` when given: a newer row of
        the same key was not yet seen by the archive); returns their ids."""
        with self._lock:
            if upto is None:
                rows = self._db.execute("DELETE FROM outbox WHERE key = ? RETURNING id", (key,))
            else:
                rows = self._db.execute("DELETE FROM outbox WHERE key = ? AND id <= ? RETURNING id",
                                        (key, upto))
            return [r[0] for r in rows.fetchall()]

    def done(self, row_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
