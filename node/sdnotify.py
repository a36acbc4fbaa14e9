"""systemd's notify protocol, spoken directly (no dependency).

``Type=notify`` units wait for ``READY=1``; ``WatchdogSec=`` expects ``WATCHDOG=1`` at least
every half period or systemd restarts the node. The socket path comes from ``NOTIFY_SOCKET``
(``@`` = abstract namespace). Without it (not under systemd) every call is a no-op.
Thread: any. Cost: one datagram.
"""

from __future__ import annotations

import os
import socket
from collections import deque

#: Messages remembered for diagnostics and tests (a node sends one WATCHDOG=1 a second for months).
RECENT = 16


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr = ("\0" + addr[1:]) if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else None
        self.sent: deque[str] = deque(maxlen=RECENT)  # the last few, not every one since boot
        self.count = 0

    @property
    def enabled(self) -> bool:
        return bool(self._addr)

    def notify(self, message: str) -> bool:
        if not self._addr:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(message.encode(), self._addr)
            except OSError:
                return False
        self.sent.append(message)
        self.count += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")
