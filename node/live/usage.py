"""Live data used today and this month (UTC calendar), kept in a small JSON file.

The node pays for every byte on 4G: the heartbeat reports these counters and a monthly cap
refuses new sessions. Bytes are added from the push thread in batches (``add``) and written at
most every ``flush_s`` seconds (few writes on the SD card); a crash loses at most that much.
Day and month roll over by the UTC date of the injected clock.
Thread: ``add`` from push threads, ``snapshot`` from any; one lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)


class DataUsage:
    def __init__(self, path: Path | None, clock, flush_s: float = 30.0) -> None:
        self._path = path
        self._clock = clock
        self._flush_s = flush_s
        self._lock = threading.Lock()
        self.day, self.month = "", ""
        self.bytes_today = 0
        self.bytes_month = 0
        self._last_flush = clock.monotonic()
        self._load()

    def _load(self) -> None:
        if self._path is None or not self._path.is_file():
            return
        try:
            data = json.loads(self._path.read_text())
            self.day, self.month = str(data["day"]), str(data["month"])
            self.bytes_today, self.bytes_month = int(data["bytes_today"]), int(data["bytes_month"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("live usage file unreadable (%s): counting from zero", exc)

    def _roll(self, now: datetime) -> None:
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        if month != self.month:
            self.month, self.bytes_month = month, 0
        if day != self.day:
            self.day, self.bytes_today = day, 0

    def add(self, nbytes: int) -> None:
        with self._lock:
            self._roll(self._clock.utc())
            self.bytes_today += nbytes
            self.bytes_month += nbytes
            if self._clock.monotonic() - self._last_flush >= self._flush_s:
                self._write()

    def month_bytes(self) -> int:
        with self._lock:
            self._roll(self._clock.utc())
            return self.bytes_month

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            self._roll(self._clock.utc())
            return {"bytes_today": self.bytes_today, "bytes_month": self.bytes_month}

    def flush(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        self._last_flush = self._clock.monotonic()
        if self._path is None:
            return
        data = {"day": self.day, "month": self.month, "bytes_today": self.bytes_today,
                "bytes_month": self.bytes_month}
        tmp = self._path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self._path)
        except OSError as exc:
            log.warning("live usage not saved: %s", exc)
