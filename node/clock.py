"""Injected time.

Every component that needs the time takes a :class:`Clock`. Production uses
:class:`SystemClock`; tests use :class:`FakeClock` and move time by hand, so schedules,
retention and state machines are tested with tables of inputs and never sleep.

Two timelines are kept apart on purpose:

* ``monotonic()`` — seconds that never jump (ordering, durations, timeouts, frame pacing);
* ``utc()`` — the wall clock in UTC, which *can* jump (NTP correction, a node booted without
  RTC). It names files and rows, but never decides their order alone.

``synced()`` says whether the wall clock is believed (NTP or RTC); footage written while it is
``False`` is flagged as having an untrusted time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""

    def utc(self) -> datetime:
        """Current wall time, timezone-aware, in UTC."""

    def synced(self) -> bool:
        """True when the wall clock is synchronised (NTP/RTC)."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock's timeline."""


class SystemClock:
    """The real clocks. ``synced()`` reads the kernel's NTP state (adjtimex) when it can.

    Thread: any. Cost: one syscall per call; ``synced()`` is cached for 10 s.
    """

    _SYNC_FILE = Path("/run/systemd/timesync/synchronized")

    def __init__(self) -> None:
        self._sync_cache: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return time.monotonic()

    def utc(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def synced(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._sync_cache and now - self._sync_cache[0] < 10.0:
                return self._sync_cache[1]
            value = _kernel_clock_synced()
            self._sync_cache = (now, value)
            return value


def _kernel_clock_synced() -> bool:
    """Ask the kernel whether NTP disciplines the clock (STA_UNSYNC clear).

    Falls back to systemd-timesyncd's marker file. Assumes Linux; returns False elsewhere.
    """
    try:
        import ctypes
        import ctypes.util

        class Timex(ctypes.Structure):
            _fields_ = [("modes", ctypes.c_uint), ("_pad", ctypes.c_byte * 204)]

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = Timex()
        state = libc.adjtimex(ctypes.byref(tx))
        # TIME_ERROR (5) means "clock not synchronised"; 0..4 are synchronised states.
        if state >= 0:
            return state != 5
    except (OSError, AttributeError):
        pass
    return SystemClock._SYNC_FILE.exists()


class FakeClock:
    """A clock that moves only when told. ``sleep`` advances it instantly.

    >>> c = FakeClock(datetime(2026, 1, 1, tzinfo=UTC)); c.advance(5); c.monotonic()
    5.0
    """

    def __init__(self, start: datetime | None = None, *, synced: bool = True) -> None:
        self._mono = 0.0
        self._utc = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._synced = synced
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def utc(self) -> datetime:
        with self._lock:
            return self._utc

    def synced(self) -> bool:
        return self._synced

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        """Move both timelines forward by ``seconds``."""
        with self._lock:
            self._mono += seconds
            self._utc += timedelta(seconds=seconds)

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (negative = backwards), as NTP or DST mistakes do."""
        with self._lock:
            self._utc += timedelta(seconds=seconds)

    def set_synced(self, value: bool) -> None:
        self._synced = value
