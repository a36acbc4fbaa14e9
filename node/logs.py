"""Structured log lines on stderr: ``level=INFO logger=node.app msg="..."``.

Under systemd (``JOURNAL_STREAM`` set) each line is prefixed with its syslog priority
(``<3>``...``<7>``) so journald records the level; elsewhere lines start with a UTC time.
Credentials in URLs are masked in every line (:mod:`hw.redact`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from hw.redact import redact_text

_PRIO = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class LogfmtFormatter(logging.Formatter):
    converter = time.gmtime

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        line = f'level={record.levelname} logger={record.name} thread={record.threadName} msg="{msg}"'
        if record.exc_info:
            exc = self.formatException(record.exc_info).replace("\n", "\\n").replace('"', "'")
            line += f' exc="{exc}"'
        line = redact_text(line)  # an IP camera's password, whatever logged it
        if self.journal:
            return f"<{_PRIO.get(record.levelno, 6)}>{line}"
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"ts={ts}.{int(record.msecs):03d}Z {line}"


class RepeatLimit(logging.Filter):
    """At most ``burst`` lines of one kind (logger, level, message template) per ``window_s``;
    the rest are counted and summed up in one line when the next window opens — 26,000 odd
    commands must not write 26,000 tracebacks onto the card. Times are the records' own."""

    def __init__(self, burst: int = 5, window_s: float = 60.0) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, count, dropped]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        with self._lock:
            slot = self._seen.get(key)
            if slot is None or record.created - slot[0] >= self.window_s:
                dropped = int(slot[2]) if slot else 0
                self._seen[key] = [record.created, 1, 0]
                if len(self._seen) > 1000:  # bounded memory: forget the oldest kinds
                    for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                        del self._seen[old]
                if dropped:
                    record.msg = f"{record.msg} [{dropped} more like this suppressed]"
                return True
            slot[1] += 1
            if slot[1] <= self.burst:
                return True
            slot[2] += 1
            return False


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    handler.addFilter(RepeatLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("paho").setLevel(logging.WARNING)
