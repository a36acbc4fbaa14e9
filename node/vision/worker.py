"""Inference off the analysis thread: the :class:`Job` the model works on and the one thread
that runs it.

The worker has a one-job mailbox: the analyzer only gives it a job when it is idle
(:meth:`InferenceWorker.busy`), and picks the finished job up on its next frame
(:meth:`InferenceWorker.take`). Nothing queues up behind a slow model: frames that arrive
while it works are analysed for motion only.

Threads: ``camnode-infer`` runs the jobs; every other method is called from the analysis
thread (``wait_idle`` also from tests and benchmarks). ``stop`` ends the thread (joined,
5 s at most).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.vision.boxes import Box, Crop
from node.vision.tracks import Found

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One inference call: the crops of one frame, and (once run) what the model found."""

    seq: int
    mono: float
    utc: Any
    image: np.ndarray  # main yuv420p, or lores luma when the source has no pixels
    width: int
    height: int
    colour: bool
    crops: list[Crop]
    lores: np.ndarray
    motion: list[Box]  # motion regions the crops cover (known empty if nothing is found)
    found: list[Found] | None = None
    ms: float = 0.0


class InferenceWorker:
    """One inference thread with a one-job mailbox: a new job is only given when it is idle."""

    def __init__(self, fn: Callable[[Job], None]) -> None:
        self._fn = fn
        self._cond = threading.Condition()
        self._job: Job | None = None
        self._done: Job | None = None
        self._running = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="camnode-infer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def busy(self) -> bool:
        with self._cond:
            return self._job is not None or self._running or self._done is not None

    def submit(self, job: Job) -> None:
        with self._cond:
            self._job = job
            self._cond.notify_all()

    def take(self) -> Job | None:
        with self._cond:
            done, self._done = self._done, None
            return done

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None and not self._running, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job, self._job, self._running = self._job, None, True
            try:
                self._fn(job)
            except Exception:
                log.exception("inference failed")
                job.found = []
            with self._cond:
                self._running = False
                self._done = job
                self._cond.notify_all()
