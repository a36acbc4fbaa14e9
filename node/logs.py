"""Structured log lines on stderr: ``level=INFO logger=node.app msg="..."``.

Under systemd (``JOURNAL_STREAM`` set) each line is prefixed with its syslog priority
(``<3>``...``<7>``) so journald records the level; elsewhere lines start with a UTC time.
Credentials in URLs are masked in every line (:mod:`hw.redact`).
"""

from __future__ import annotations

import logging
import os
import sys
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


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("paho").setLevel(logging.WARNING)
