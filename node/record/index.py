"""The segment index: SQLite in WAL mode, one row per segment, plus events and tombstones.

Rows are keyed by the segment's sequence number (the recording order, immune to wall-clock
jumps); ``start_us``/``end_us`` are UTC microseconds since the epoch. A deleted segment keeps
its row as a *tombstone* (``deleted_us`` set) so the hash chain can be verified across
retention gaps. Events (motion/person clips, legal holds) live in ``events`` and flag the
segments they overlap (``motion``, ``person``, ``protected``; ids in ``segment_events``).

The index is a cache of what the files and the journal (:mod:`node.record.journal`) say:
:mod:`node.record.store` rebuilds it from them when it is missing or corrupt.

Cost: an insert ≈ 50-100 µs (one commit per segment, i.e. per minute); a range lookup uses
``start_us`` bounded by the longest segment: < 1 ms at 43,200 rows (see bench).
Thread: any; one connection behind a lock, every method holds it briefly.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from node.record.segment import SegmentInfo

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    bytes INTEGER NOT NULL,
    media_bytes INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    keyframes INTEGER NOT NULL,
    synced INTEGER NOT NULL,
    clock_step_s REAL NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL,
    prev TEXT NOT NULL,
    chain TEXT NOT NULL,
    sig TEXT,
    motion INTEGER NOT NULL DEFAULT 0,
    person INTEGER NOT NULL DEFAULT 0,
    protected INTEGER NOT NULL DEFAULT 0,
    missing INTEGER NOT NULL DEFAULT 0,
    deleted_us INTEGER,
    delete_reason TEXT
);
CREATE INDEX IF NOT EXISTS seg_start ON segments(start_us);
CREATE INDEX IF NOT EXISTS seg_live ON segments(protected, seq) WHERE deleted_us IS NULL;
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    start_us INTEGER NOT NULL,
    end_us INTEGER,
    motion INTEGER NOT NULL DEFAULT 0,
    person INTEGER NOT NULL DEFAULT 0,
    protect INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS holds (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS segment_events (
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (seq, event_id)
) WITHOUT ROWID;
"""

COLUMNS = ("seq", "name", "start_us", "end_us", "duration_s", "bytes", "media_bytes", "frames",
           "keyframes", "synced", "clock_step_s", "recovered", "sha256", "prev", "chain", "sig",
           "motion", "person", "protected", "missing", "deleted_us", "delete_reason")
_SEL = ", ".join(COLUMNS)


class IndexCorrupt(RuntimeError):
    """The index file cannot be used; the store moves it aside and rebuilds."""


def _row(r: tuple) -> dict[str, Any]:
    return dict(zip(COLUMNS, r, strict=True))


class Index:
    """The SQLite index. ``path`` may be ``":memory:"`` in tests."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            ok = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise IndexCorrupt(f"{path}: {ok}")
            self._db.executescript(SCHEMA)
            self._max_len_us = self._db.execute(
                "SELECT COALESCE(MAX(end_us - start_us), 0) FROM segments").fetchone()[0]
            self._recount()
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(f"{path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ writes

    def add(self, info: SegmentInfo, nbytes: int) -> None:
        """Insert a closed segment and flag it with every event it overlaps."""
        self.add_many([(info, nbytes)])

    def add_many(self, items: Iterable[tuple[SegmentInfo, int]], tombstone_us: int | None = None,
                 reason: str | None = None) -> int:
        """Insert many rows in one transaction (rebuild); returns how many were new."""
        rows = [(i.seq, i.name, i.start_us, i.end_us, (i.end_us - i.start_us) / 1e6, n,
                 i.media_bytes, i.frames, i.keyframes, int(i.synced), i.clock_step_s,
                 int(i.recovered), i.sha256, i.prev, i.chain, i.sig, tombstone_us, reason)
                for i, n in items]
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                cur = self._db.executemany(
                    "INSERT OR IGNORE INTO segments (seq, name, start_us, end_us, duration_s, bytes,"
                    " media_bytes, frames, keyframes, synced, clock_step_s, recovered, sha256, prev,"
                    " chain, sig, deleted_us, delete_reason)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                added = cur.rowcount
                self._apply_events(min(r[0] for r in rows), min(r[2] for r in rows),
                                   max(r[3] for r in rows))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._max_len_us = max(self._max_len_us, max(r[3] - r[2] for r in rows))
            if len(rows) == 1 and added == 1 and tombstone_us is None:
                self._live_bytes += rows[0][5]
                self._live_count += 1
            elif added:
                self._recount()
        return added

    def _recount(self) -> None:
        """Live bytes and count from the table (lock held). Kept up to date incrementally
        afterwards: a full SUM costs ~7 ms at 43,200 rows, and the sweep needs it each time."""
        self._live_bytes, self._live_count = self._db.execute(
            "SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM segments"
            " WHERE deleted_us IS NULL AND missing = 0").fetchone()

    def _unlive(self, seq: int) -> None:
        """Subtract a row from the live totals if it is live (lock held, before the update)."""
        r = self._db.execute("SELECT bytes FROM segments WHERE seq = ? AND deleted_us IS NULL"
                             " AND missing = 0", (seq,)).fetchone()
        if r is not None:
            self._live_bytes -= r[0]
            self._live_count -= 1

    def _rollback(self) -> None:
        """Roll back if SQLite has not already done so (it does on SQLITE_FULL)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _apply_events(self, min_seq: int, lo_us: int, hi_us: int) -> None:
        """Flag segments with seq >= min_seq from every event overlapping [lo, hi) (lock held)."""
        for ev, s, e, motion, person, protect in self._db.execute(
                "SELECT event_id, start_us, end_us, motion, person, protect FROM events"
                " WHERE start_us < ? AND (end_us IS NULL OR end_us > ?)", (hi_us, lo_us)).fetchall():
            self._flag(ev, s, e, motion, person, protect, min_seq)

    def _flag(self, ev: str, s: int, e: int | None, motion: int, person: int, protect: int,
              min_seq: int = 0) -> int:
        end = e if e is not None else 2**62
        where = "seq >= ? AND end_us > ? AND start_us < ? AND deleted_us IS NULL"
        args = (min_seq, s, end)
        self._db.execute(f"UPDATE segments SET motion = motion | ?, person = person | ?,"
                         f" protected = protected | ? WHERE {where}", (motion, person, protect, *args))
        cur = self._db.execute(f"INSERT OR IGNORE INTO segment_events (seq, event_id)"
                               f" SELECT seq, ? FROM segments WHERE {where}", (ev, *args))
        return cur.rowcount

    def upsert_event(self, event_id: str, start_us: int, end_us: int | None, *, motion: bool = False,
                     person: bool = False, protect: bool = False) -> int:
        """Record or extend an event and flag the segments it covers; returns rows flagged.

        Flags only ever get set (an event never un-protects footage). Committed durably
        (``synchronous=FULL`` for this one transaction: the WAL is synced): the node publishes
        the event only after this returns, and the station's archive must never hold an event
        that a power cut took off the card (rare writes: one per event start/end).
        """
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN")
            try:
                old = self._db.execute("SELECT start_us, end_us, motion, person, protect FROM events"
                                       " WHERE event_id = ?", (event_id,)).fetchone()
                if old is not None:
                    start_us = min(start_us, old[0])
                    if old[1] is not None and end_us is not None:
                        end_us = max(end_us, old[1])
                    motion, person, protect = (motion or bool(old[2]), person or bool(old[3]),
                                               protect or bool(old[4]))
                self._db.execute(
                    "INSERT OR REPLACE INTO events (event_id, start_us, end_us, motion, person, protect)"
                    " VALUES (?,?,?,?,?,?)",
                    (event_id, start_us, end_us, int(motion), int(person), int(protect)))
                n = self._flag(event_id, start_us, end_us, int(motion), int(person), int(protect))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")
        return n

    def remove_event(self, event_id: str) -> int:
        """Forget an event and take back the flags only it set (a released hold): a segment
        stays protected while another protecting event covers it. Returns segments it covered."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                seqs = [r[0] for r in self._db.execute(
                    "SELECT seq FROM segment_events WHERE event_id = ?", (event_id,))]
                self._db.execute("DELETE FROM segment_events WHERE event_id = ?", (event_id,))
                self._db.execute("DELETE FROM events WHERE event_id = ?", (event_id,))
                for i in range(0, len(seqs), 500):
                    chunk = seqs[i:i + 500]
                    marks = ",".join("?" * len(chunk))
                    self._db.execute(
                        "UPDATE segments SET protected = EXISTS (SELECT 1 FROM segment_events se"
                        " JOIN events e ON e.event_id = se.event_id WHERE se.seq = segments.seq"
                        f" AND e.protect = 1) WHERE seq IN ({marks})", chunk)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return len(seqs)

    def put_hold(self, name: str, owner: str, start_us: int, end_us: int, created_us: int,
                 expires_us: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO holds (name, owner, start_us, end_us, created_us,"
                             " expires_us) VALUES (?,?,?,?,?,?)",
                             (name, owner, start_us, end_us, created_us, expires_us))

    def drop_hold(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM holds WHERE name = ?", (name,)).rowcount > 0

    def holds(self) -> list[dict[str, Any]]:
        keys = ("name", "owner", "start_us", "end_us", "created_us", "expires_us")
        with self._lock:
            return [dict(zip(keys, r, strict=True)) for r in self._db.execute(
                f"SELECT {', '.join(keys)} FROM holds ORDER BY created_us, name")]

    def expired_holds(self, now_us: int) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT name FROM holds WHERE expires_us <= ? ORDER BY expires_us", (now_us,))]

    def close_open_events(self) -> int:
        """End open-ended events at the end of the recorded footage (after a crash, nobody
        will close them, and they would protect every future segment)."""
        with self._lock:
            end = self._db.execute("SELECT MAX(end_us) FROM segments").fetchone()[0]
            if end is None:
                return 0
            return self._db.execute("UPDATE events SET end_us = MAX(start_us, ?) WHERE end_us IS NULL",
                                    (end,)).rowcount

    def tombstone(self, seq: int, now_us: int, reason: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                before = (self._live_bytes, self._live_count)
                self._unlive(seq)
                self._db.execute("UPDATE segments SET deleted_us = ?, delete_reason = ? WHERE seq = ?",
                                 (now_us, reason, seq))
                self._db.execute("COMMIT")
            except BaseException:
                self._live_bytes, self._live_count = before
                self._rollback()
                raise

    def set_missing(self, seq: int) -> None:
        with self._lock:
            self._unlive(seq)
            self._db.execute("UPDATE segments SET missing = 1 WHERE seq = ?", (seq,))

    # ------------------------------------------------------------------ reads

    def get(self, seq: int) -> dict[str, Any] | None:
        with self._lock:
            r = self._db.execute(f"SELECT {_SEL} FROM segments WHERE seq = ?", (seq,)).fetchone()
        return _row(r) if r else None

    def rows(self, *, live_only: bool = False) -> list[dict[str, Any]]:
        """Every row in recording order (tombstones included unless ``live_only``)."""
        where = "WHERE deleted_us IS NULL AND missing = 0" if live_only else ""
        with self._lock:
            return [_row(r) for r in self._db.execute(
                f"SELECT {_SEL} FROM segments {where} ORDER BY seq")]

    def live_names(self) -> dict[str, int]:
        """``{name: seq}`` of segments that should exist on disk."""
        with self._lock:
            return dict(self._db.execute(
                "SELECT name, seq FROM segments WHERE deleted_us IS NULL AND missing = 0"))

    def deleted_names(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute(
                "SELECT name, seq FROM segments WHERE deleted_us IS NOT NULL"))

    def head(self) -> tuple[int, str | None]:
        """``(highest seq, its chain value)``; ``(0, None)`` when empty."""
        with self._lock:
            r = self._db.execute("SELECT seq, chain FROM segments ORDER BY seq DESC LIMIT 1").fetchone()
        return (r[0], r[1]) if r else (0, None)

    def range(self, start_us: int, end_us: int) -> list[dict[str, Any]]:
        """Live segments overlapping ``[start_us, end_us)``, in recording order."""
        with self._lock:
            return [_row(r) for r in self._db.execute(
                f"SELECT {_SEL} FROM segments WHERE start_us >= ? AND start_us < ? AND end_us > ?"
                " AND deleted_us IS NULL AND missing = 0 ORDER BY seq",
                (start_us - self._max_len_us, end_us, start_us))]

    def oldest(self, limit: int, *, protected: bool) -> list[tuple[int, str, int, int]]:
        """``(seq, name, bytes, end_us)`` of the oldest live segments of one protection class."""
        with self._lock:
            return list(self._db.execute(
                "SELECT seq, name, bytes, end_us FROM segments WHERE deleted_us IS NULL"
                " AND protected = ? ORDER BY seq LIMIT ?", (int(protected), limit)))

    def age_horizon(self, cutoff_us: int) -> int:
        """Highest seq of a segment written with a synchronised clock that ended before
        ``cutoff_us`` (0 when none): it and everything recorded before it are older."""
        with self._lock:
            r = self._db.execute(
                # by start time: only the few rows past the cutoff are read (the planner's own
                # choice walked the whole table backwards by seq: 7 ms at 43,200 rows)
                "SELECT MAX(seq) FROM segments INDEXED BY seg_start"
                " WHERE start_us < ? AND end_us < ? AND synced = 1",
                (cutoff_us, cutoff_us)).fetchone()[0]
        return r or 0

    def event_ids(self, seq: int) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT event_id FROM segment_events WHERE seq = ? ORDER BY event_id", (seq,))]

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(zip(("event_id", "start_us", "end_us", "motion", "person", "protect"), r,
                             strict=True))
                    for r in self._db.execute("SELECT event_id, start_us, end_us, motion, person,"
                                              " protect FROM events ORDER BY start_us")]

    def totals(self) -> dict[str, int]:
        """Live bytes, protected bytes, live count and the oldest live start (µs)."""
        with self._lock:
            first = self._db.execute("SELECT start_us FROM segments WHERE deleted_us IS NULL"
                                     " AND missing = 0 ORDER BY seq LIMIT 1").fetchone()
            pb = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM segments"
                                  " WHERE deleted_us IS NULL AND protected = 1").fetchone()[0]
            return {"bytes": self._live_bytes, "segments": self._live_count, "protected_bytes": pb,
                    "oldest_start_us": first[0] if first else 0}

    def recent_rate(self, n: int = 30) -> float:
        """Bytes per second of the last ``n`` live segments (0.0 when none)."""
        with self._lock:
            b, d = self._db.execute(
                "SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(duration_s), 0) FROM (SELECT bytes,"
                " duration_s FROM segments WHERE deleted_us IS NULL ORDER BY seq DESC LIMIT ?)",
                (n,)).fetchone()
        return b / d if d > 0 else 0.0

    def recent_max_bytes(self, n: int = 10) -> int:
        """The largest of the last ``n`` live segments (bytes; 0 when none)."""
        with self._lock:
            return self._db.execute(
                "SELECT COALESCE(MAX(bytes), 0) FROM (SELECT bytes FROM segments"
                " WHERE deleted_us IS NULL ORDER BY seq DESC LIMIT ?)", (n,)).fetchone()[0]

    def prune_tombstones(self) -> int:
        """Drop tombstones older than the oldest live row, keeping the last one (chain anchor)."""
        with self._lock:
            first = self._db.execute("SELECT MIN(seq) FROM segments WHERE deleted_us IS NULL"
                                     ).fetchone()[0]
            if first is None:
                return 0
            cur = self._db.execute("DELETE FROM segments WHERE deleted_us IS NOT NULL AND seq < ? - 1",
                                   (first,))
            self._db.execute("DELETE FROM segment_events WHERE seq NOT IN (SELECT seq FROM segments)")
            self._db.execute("DELETE FROM events WHERE end_us IS NOT NULL AND end_us < (SELECT"
                             " MIN(start_us) FROM segments WHERE deleted_us IS NULL)")
            self._db.execute("DELETE FROM holds WHERE ('hold:' || name) NOT IN"
                             " (SELECT event_id FROM events)")  # its footage is gone
            return cur.rowcount
