"""Which events are open, kept on the card: after a power cut or a crash the node closes them.

An event's ``start`` goes to the station at once, its ``end`` only when activity stops. A node
that dies in between leaves the station with an event that never ends (and, for object events,
footage protected open-endedly). The action router records each event message here (``start``
and ``update`` store the latest payload, ``end`` removes it); at the next start the node reads
what is left and closes it (:func:`node.events.close_interrupted`), with ``end_reason``
``"interrupted"`` and the last activity it had recorded as the end.

SQLite (WAL, ``synchronous=FULL``) beside the outbox: one small synced write per event message.
Synced because the record must be on the card before the message can leave the node: with
``NORMAL`` a power cut lost the row of an event whose ``start`` the archive already had, and
that event never ended (seen in the VM power-cut campaign). ``end`` is recorded after its
message is in the outbox (:class:`~node.actions.ActionRouter`): a cut in between closes the
event once more, as ``interrupted``, rather than never.
Thread: any (one connection guarded by a lock).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class OpenEvents:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS open_events "
                         "(id TEXT PRIMARY KEY, payload TEXT NOT NULL)")

    def track(self, payload: dict[str, Any]) -> None:
        """Record one event message (``start``/``update``: open; ``end``: closed)."""
        event_id, phase = payload.get("id"), payload.get("phase")
        if not isinstance(event_id, str):
            return
        with self._lock:
            if phase == "end":
                self._db.execute("DELETE FROM open_events WHERE id = ?", (event_id,))
            else:
                self._db.execute("INSERT OR REPLACE INTO open_events (id, payload) VALUES (?, ?)",
                                 (event_id, json.dumps(payload, sort_keys=True)))

    def left_open(self) -> list[dict[str, Any]]:
        """The latest message of every event still open, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT payload FROM open_events ORDER BY rowid").fetchall()
        out = []
        for (text,) in rows:
            try:
                out.append(json.loads(text))
            except ValueError:
                continue
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
