"""The footage store on the card: segment files + index + journal, and their reconciliation.

:meth:`Store.open` runs once at start, before recording, and leaves the directory in a state
where *every* segment file is final, sealed and indexed:

1. open the index; if SQLite says it is corrupt, move it aside (``index.db.corrupt-<utc>``)
   and start an empty one;
2. finish deletions a crash interrupted (tombstoned rows whose file still exists);
3. index sealed files the index does not know (this *is* the rebuild when the index was
   lost: only each file's seal is read, one ``pread`` per file), replaying the journal's
   events and tombstones into a fresh index;
4. recover ``.part`` files (a crash while writing) up to their last complete fragment, seal
   and index them, or remove them when not one fragment survived;
5. flag indexed segments whose file has vanished (``missing``; ``verify`` names them);
6. end events left open by a crash at the end of the recorded footage.

Thread: :meth:`open` before the writer starts; :meth:`delete` on the retention thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.record import mp4box
from node.record.index import Index, IndexCorrupt
from node.record.integrity import GENESIS, Signer
from node.record.journal import Journal
from node.record.segment import PART, SegmentInfo, name_seq, recover_part, segment_entries, to_us

log = logging.getLogger(__name__)

INDEX_NAME = "index.db"
JOURNAL_NAME = "journal.jsonl"
#: Event ids of legal holds: ``hold:<name>`` (the hold's owner and expiry are in ``holds``).
HOLD_PREFIX = "hold:"


class Store:
    """Files under ``root`` (``YYYYMMDD/`` day directories), ``root/index.db``, the journal."""

    def __init__(self, root: Path, signer: Signer | None = None, clock: Any = None) -> None:
        self.root = Path(root)
        self.signer = signer or Signer.none()
        self.clock = clock
        self.journal = Journal(self.root / JOURNAL_NAME)
        self.index: Index | None = None
        self.report: dict[str, Any] = {}

    def path_of(self, name: str) -> Path:
        return self.root / name[:8] / name

    def _now_us(self) -> int:
        return to_us(self.clock.utc() if self.clock else datetime.now(UTC))

    # ------------------------------------------------------------------ open / rebuild

    def open(self) -> dict[str, Any]:
        """Open the index and reconcile it with the files (see module doc). Returns a report."""
        self.root.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {"index_corrupt": False, "indexed_from_files": 0, "recovered": 0,
                                  "removed_parts": 0, "missing": 0, "finished_deletions": 0}
        path = self.root / INDEX_NAME
        fresh = not path.exists()
        try:
            self.index = Index(path)
        except IndexCorrupt as exc:
            log.error("segment index corrupt (%s): rebuilding from the files", exc)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            for suffix in ("", "-wal", "-shm"):
                p = self.root / (INDEX_NAME + suffix)
                if p.exists():
                    os.replace(p, self.root / f"{INDEX_NAME}{suffix}.corrupt-{stamp}")
            self.index = Index(path)
            report["index_corrupt"] = fresh = True
        idx = self.index
        if fresh or idx.head()[0] == 0:
            self._replay_journal()

        finals: dict[str, Any] = {}  # name -> path (str: 43,200 Path objects cost 0.3 s)
        parts: list[Path] = []
        for name, path in segment_entries(self.root):
            if name.endswith(PART):
                parts.append(Path(path))
            else:
                finals[name] = path
        live, deleted = idx.live_names(), idx.deleted_names()

        for name in finals.keys() & deleted.keys():
            Path(finals.pop(name)).unlink(missing_ok=True)
            report["finished_deletions"] += 1

        new: list[tuple[SegmentInfo, int]] = []
        # The rebuild: one tail read per file, sequential (threads measured slower: the JSON
        # parsing holds the GIL and the page cache is warm after the directory scan).
        for name in sorted(finals.keys() - live.keys(), key=name_seq):
            p = finals[name]
            seal = mp4box.read_seal_sized(p)
            if seal is not None and seal[0].get("name") == name:
                new.append((SegmentInfo.from_seal(seal[0], None), seal[2]))
            elif seal is None:
                parts.append(Path(finals.pop(name)))  # final name but no seal: interrupted
            else:
                log.error("%s carries the seal of %s: not indexed (tampered?)", name, seal[0].get("name"))
        report["indexed_from_files"] = idx.add_many(new)

        _head_seq, head = idx.head()
        for p in sorted(parts, key=lambda q: name_seq(q.name)):
            info = recover_part(p, self.signer, head or GENESIS)
            if info is None:
                report["removed_parts"] += 1
                continue
            idx.add(info, info.path.stat().st_size if info.path else info.media_bytes)
            finals[info.name] = info.path  # type: ignore[assignment]
            head = info.chain
            report["recovered"] += 1

        for name, seq in idx.live_names().items():
            if name not in finals:
                log.error("segment %s is in the index but its file is gone", name)
                idx.set_missing(seq)
                report["missing"] += 1
        report["events_closed"] = idx.close_open_events()
        report["journal_compacted"] = self.compact_journal()
        self.report = report
        return report

    def _replay_journal(self) -> None:
        """Put the journal's events and tombstones into a fresh index."""
        idx = self.index
        assert idx is not None
        tombs: list[tuple[SegmentInfo, int]] = []
        for e in self.journal.entries():
            if e.get("t") == "event":
                idx.upsert_event(e["event_id"], e["start_us"], e.get("end_us"),
                                 motion=e.get("motion", False), person=e.get("person", False),
                                 protect=e.get("protect", False))
            elif e.get("t") == "hold":
                self._index_hold(e)
            elif e.get("t") == "release":
                idx.drop_hold(e["name"])
                idx.remove_event(HOLD_PREFIX + e["name"])
            elif e.get("t") == "del" and "seal" in e:
                tombs.append((SegmentInfo.from_seal(e["seal"], self.path_of(e["seal"]["name"])),
                              e.get("bytes", 0)))
        for info, n in tombs:
            idx.add_many([(info, n)], tombstone_us=self._now_us(), reason="journal")

    # ------------------------------------------------------------------ changes

    def add(self, info: SegmentInfo) -> None:
        assert self.index is not None
        self.index.add(info, info.path.stat().st_size if info.path else info.media_bytes)

    def event(self, event_id: str, start_us: int, end_us: int | None, *, motion: bool = False,
              person: bool = False, protect: bool = False) -> int:
        """Journal then index an event; returns how many segments it flagged."""
        assert self.index is not None
        self.journal.append({"t": "event", "event_id": event_id, "start_us": start_us,
                             "end_us": end_us, "motion": motion, "person": person, "protect": protect})
        return self.index.upsert_event(event_id, start_us, end_us, motion=motion, person=person,
                                       protect=protect)

    def delete(self, seq: int, reason: str, *, allow_protected: bool = False) -> int:
        """Delete one segment on purpose: journal, tombstone, then unlink. Returns bytes freed.

        The order makes a crash at any point safe: a tombstoned file that still exists is
        deleted again by :meth:`open`; a journal line without a tombstone is harmless. On a
        card so full that even the journal line or the tombstone cannot be written, the file
        is deleted anyway (recording matters more) and the records are written right after,
        into the space it freed.
        """
        import sqlite3

        assert self.index is not None
        row = self.index.get(seq)
        if row is None or row["deleted_us"] is not None:
            return 0
        if row["protected"] and not allow_protected:
            return 0  # protected since the caller chose it (an event from the analysis thread)
        entry = _del_entry(row, reason, self._now_us())
        late: list[str] = []
        try:
            self.journal.append(entry)
        except OSError:
            late.append("journal")
        try:
            self.index.tombstone(seq, self._now_us(), reason)
        except sqlite3.OperationalError:
            late.append("tombstone")
        path = self.path_of(row["name"])
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only succeeds once the day directory is empty
        if "journal" in late:
            with contextlib.suppress(OSError):
                self.journal.append(entry)
        if "tombstone" in late:
            self.index.tombstone(seq, self._now_us(), reason)
        return int(row["bytes"])

    def hold(self, name: str, owner: str, start_us: int, end_us: int, expires_us: int) -> int:
        """A legal hold: journal, then protect ``[start, end)`` until released or expired."""
        assert self.index is not None
        entry = {"t": "hold", "name": name, "owner": owner, "start_us": start_us, "end_us": end_us,
                 "created_us": self._now_us(), "expires_us": expires_us}
        self.journal.append(entry)
        return self._index_hold(entry)

    def _index_hold(self, e: dict[str, Any]) -> int:
        assert self.index is not None
        self.index.put_hold(e["name"], e["owner"], e["start_us"], e["end_us"], e["created_us"],
                            e["expires_us"])
        return self.index.upsert_event(HOLD_PREFIX + e["name"], e["start_us"], e["end_us"], protect=True)

    def release(self, name: str) -> bool:
        """End a hold: its footage goes back to retention (unless another event protects it).
        False when there is no such hold."""
        assert self.index is not None
        if not any(h["name"] == name for h in self.index.holds()):
            return False
        self.journal.append({"t": "release", "name": name})
        self.index.drop_hold(name)
        self.index.remove_event(HOLD_PREFIX + name)
        return True

    def compact_journal(self, limit_bytes: int = 8 << 20) -> bool:
        """Rewrite the journal from the index once it passes ``limit_bytes`` (it grows by one
        line per deleted segment, ~26 MB a month): the events and tombstones the index still
        holds, i.e. what a rebuild needs. Retention thread or :meth:`open`. Returns True if done.
        """
        if self.index is None or self.journal.size() < limit_bytes:
            return False
        entries: list[dict[str, Any]] = [
            {"t": "event", "event_id": e["event_id"], "start_us": e["start_us"], "end_us": e["end_us"],
             "motion": bool(e["motion"]), "person": bool(e["person"]), "protect": bool(e["protect"])}
            for e in self.index.events() if not e["event_id"].startswith(HOLD_PREFIX)]
        entries += [{"t": "hold", **h} for h in self.index.holds()]
        entries += [_del_entry(r, r["delete_reason"] or "retention", r["deleted_us"])
                    for r in self.index.rows() if r["deleted_us"] is not None]
        before = self.journal.size()
        self.journal.rewrite(entries)
        log.info("journal compacted: %d -> %d bytes", before, self.journal.size())
        return True

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
            self.index = None


def _del_entry(row: dict[str, Any], reason: str, at_us: int) -> dict[str, Any]:
    """The journal line of a deletion: the deleted segment's seal fields (chain included)."""
    seal = {k: row[k] for k in SegmentInfo.__dataclass_fields__ if k in row and k != "path"}
    seal["synced"], seal["recovered"] = bool(row["synced"]), bool(row["recovered"])
    return {"t": "del", "seal": seal, "bytes": row["bytes"], "reason": reason, "at_us": at_us}
