"""The recording journal (``journal.jsonl``): an append-only record of the two things the
segment files cannot tell — events and deliberate deletions.

It is written once per event and once per deleted segment (no fsync: a lost line costs a
"removed without record" warning after a power cut *and* a lost index, never footage), and
read by :mod:`node.record.store` to rebuild the index (:mod:`node.record.index`) when that is
missing or corrupt.

Thread: any (a lock around each append). Cost: one ``write`` per line, no fsync.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class Journal:
    """Append-only JSON lines: events and deliberate deletions (what the files cannot tell).

    Thread: any (a lock around each append). Cost: one ``write`` per line, no fsync.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def rewrite(self, entries: list[dict[str, Any]]) -> None:
        """Replace the journal atomically (tmp, fsync, rename): compaction."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        body = b"".join((json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n").encode()
                        for e in entries)
        with self._lock:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)

    def entries(self) -> list[dict[str, Any]]:
        """Every readable line (a torn last line after a crash is skipped)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict):
                out.append(v)
        return out
