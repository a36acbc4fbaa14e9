"""Evidence cases built from the console: one background thread per case, progress read from
the files as they arrive, one zip archive to download at the end.

At most ``running`` cases pull footage at a time (default 2): each pulls clips from several poles
over their 4G links, and more at once only makes every one slower; the others wait, ``queued``,
in the order they were asked for. Asking again for a case that is queued or running (same event,
window and poles: a double click, a second officer) joins that case instead of pulling twice.

The case itself (legal holds, clip pulls, verification against the inventory's keys, the case
folder) is the station's evidence function (issue 10), handed in as ``run_case``; this module
only runs it, watches it and packs its folder. Case ids are server-made tokens, never paths.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{16}$")

#: ``run_case(event_id, window, out_dir, poles, actor) -> case dict`` (the station's evidence)
RunCase = Callable[[str, timedelta, Path, list[str], str], dict[str, Any]]


@dataclass
class Job:
    id: str
    event_id: str
    actor: str
    poles: list[str]
    window_min: float
    created: datetime
    folder: Path
    state: str = "queued"  # queued | running | done | failed
    error: str = ""
    case: dict[str, Any] = field(default_factory=dict)
    archive: Path | None = None

    def received(self) -> dict[str, int]:
        """Bytes of clip received so far per pole (the pull writes its chunks to disk)."""
        out: dict[str, int] = {}
        clips = self.folder / "clips"
        if clips.is_dir():
            for d in clips.iterdir():
                if d.is_dir():
                    out[d.name] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        return out

    @property
    def verified(self) -> bool:
        poles = self.case.get("poles") or []
        return bool(poles) and all(p.get("verified") for p in poles)


class CaseJobs:
    def __init__(self, run_case: RunCase, root: Path, clock: Any, *, running: int = 2) -> None:
        if running < 1:
            raise ValueError("running: at least 1 case at a time")
        self._run = run_case
        self.root = Path(root)
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._turns = threading.Condition(self._lock)
        self._running = running
        self._waiting: list[str] = []  # queued job ids, first asked first

    def start(self, event_id: str, window: timedelta, poles: list[str], actor: str) -> Job:
        """A new case, or the queued/running one already asked for with the same event, window
        and poles (that one is returned: nothing is pulled twice)."""
        minutes = window.total_seconds() / 60
        with self._lock:
            for j in self._jobs.values():
                if (j.state in ("queued", "running") and j.event_id == event_id
                        and j.window_min == minutes and sorted(j.poles) == sorted(poles)):
                    return j
            jid = secrets.token_hex(8)
            job = Job(jid, event_id, actor, list(poles), minutes, self._clock.utc(), self.root / jid / "case")
            self._jobs[jid] = job
            self._waiting.append(jid)
        threading.Thread(target=self._work, args=(job, window), name=f"case-{jid}", daemon=True).start()
        return job

    def ahead(self, job: Job) -> int:
        """How many cases are before this queued one: those running and those queued earlier
        (0 once it runs)."""
        with self._lock:
            if job.id not in self._waiting:
                return 0
            running = sum(1 for j in self._jobs.values() if j.state == "running")
            return running + self._waiting.index(job.id)

    def get(self, jid: str) -> Job | None:
        if not JOB_ID.match(jid or ""):
            return None
        with self._lock:
            return self._jobs.get(jid)

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def _work(self, job: Job, window: timedelta) -> None:
        with self._turns:
            self._turns.wait_for(lambda: self._waiting[0] == job.id and self._running > 0)
            self._waiting.pop(0)
            self._running -= 1
            job.state = "running"
            self._turns.notify_all()
        try:
            self._build(job, window)
        finally:
            with self._turns:
                self._running += 1
                self._turns.notify_all()

    def _build(self, job: Job, window: timedelta) -> None:
        try:
            job.case = self._run(job.event_id, window, job.folder, job.poles, job.actor)
            base = self.root / job.id / f"case-{job.id}"
            job.archive = Path(shutil.make_archive(str(base), "zip", root_dir=job.folder))
            job.state = "done"
        except Exception as exc:  # the page shows why; nothing is half-offered for download
            log.exception("case %s failed", job.id)
            job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"
