"""Bounded hand-off between threads that drops the *oldest* item when full.

A camera must never wait for a slow consumer: when the encoder or the analysis falls
behind, the stalest frame is the one to lose. Every drop is counted for the heartbeat, and
:meth:`DropOldestQueue.get_marked` tells the consumer that items were lost just before the one
it gets (the encoder thread marks such a packet so the recorder cuts there).
Thread: ``put`` from the producer, ``get`` from one consumer; both O(1).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """``get`` on a queue that was closed and drained."""


class DropOldestQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._items: deque[T] = deque()
        self._max = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self._hole = False  # items were dropped right before the oldest one
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Append; returns False if an older item had to be dropped to make room."""
        with self._cond:
            dropped = len(self._items) >= self._max
            if dropped:
                self._items.popleft()
                self.dropped += 1
                self._hole = True
            self._items.append(item)
            self._cond.notify()
            return not dropped

    def get(self, timeout: float | None = None) -> T | None:
        """Next item, ``None`` on timeout; raises :class:`Closed` once closed and empty."""
        return self.get_marked(timeout)[0]

    def get_marked(self, timeout: float | None = None) -> tuple[T | None, bool]:
        """Like :meth:`get`, with True when items were dropped right before the one returned."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._items:
                hole, self._hole = self._hole, False
                return self._items.popleft(), hole
            if self._closed:
                raise Closed
            return None, False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
