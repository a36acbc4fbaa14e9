"""Evidence cases from the console: at most N pull footage at once, the rest wait in order, a case
asked for twice is built once, a failed case frees its turn. ``run_case`` here stands for the
station's evidence function (its own tests pull real clips); it writes a file and waits until
the test lets it finish, so every state is observed, not slept for."""

from __future__ import annotations

import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from station.console.cases import CaseJobs


class Clock:
    def utc(self) -> datetime:
        return datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Cases:
    """A ``run_case`` whose every case waits for ``finish(event)``; ``fail`` makes it raise."""

    def __init__(self) -> None:
        self.go: dict[str, threading.Event] = {}
        self.started: list[str] = []
        self.fail: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, event_id: str, window: timedelta, out: Path, poles: list[str], actor: str) -> dict:
        with self.lock:
            self.started.append(event_id)
            go = self.go.setdefault(event_id, threading.Event())
        out.mkdir(parents=True)
        (out / "case.json").write_text(f'{{"event": "{event_id}"}}')
        assert go.wait(15), f"{event_id} never released"
        if event_id in self.fail:
            raise RuntimeError(f"no clip from {poles or 'the pole'}")
        return {"poles": [{"node": "pole-1", "verified": True}]}

    def finish(self, event_id: str) -> None:
        with self.lock:
            self.go.setdefault(event_id, threading.Event()).set()


def until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "state not reached"
        time.sleep(0.01)


@pytest.fixture
def world(tmp_path):
    run = Cases()
    return run, CaseJobs(run, tmp_path / "cases", Clock(), running=2)


def test_two_cases_pull_at_once_the_third_waits_its_turn_in_order(world):
    run, jobs = world
    a, b, c, d = (jobs.start(f"ev-{i}", timedelta(minutes=5), [], "officer") for i in "abcd")
    until(lambda: a.state == b.state == "running")
    assert (c.state, d.state) == ("queued", "queued")
    assert (jobs.ahead(c), jobs.ahead(d), jobs.ahead(a)) == (2, 3, 0)
    run.finish("ev-b")
    until(lambda: b.state == "done" and c.state == "running")
    assert d.state == "queued" and jobs.ahead(d) == 2
    assert run.started == ["ev-a", "ev-b", "ev-c"]  # first asked, first pulled
    for e in ("ev-a", "ev-c", "ev-d"):
        run.finish(e)
    until(lambda: all(j.state == "done" for j in (a, b, c, d)))
    assert run.started == ["ev-a", "ev-b", "ev-c", "ev-d"]
    with zipfile.ZipFile(d.archive) as z:
        assert z.read("case.json") == b'{"event": "ev-d"}'
    assert d.verified


def test_the_same_case_asked_twice_is_built_once(world):
    run, jobs = world
    first = jobs.start("ev-a", timedelta(minutes=5), ["pole-2", "pole-3"], "officer")
    again = jobs.start("ev-a", timedelta(minutes=5), ["pole-3", "pole-2"], "other-officer")
    wider = jobs.start("ev-a", timedelta(minutes=10), ["pole-2", "pole-3"], "officer")
    assert again is first and wider is not first
    run.finish("ev-a")
    until(lambda: first.state == wider.state == "done")
    assert run.started == ["ev-a", "ev-a"]  # the 5-minute case once, the 10-minute one once
    # once done, asking again builds it anew
    assert jobs.start("ev-a", timedelta(minutes=5), ["pole-2", "pole-3"], "officer") is not first


def test_a_failed_case_frees_its_turn_and_says_why(world):
    run, jobs = world
    run.fail.add("ev-a")
    a, b, c = (jobs.start(f"ev-{i}", timedelta(minutes=5), ["pole-9"], "officer") for i in "abc")
    until(lambda: c.state == "queued" and a.state == "running")
    run.finish("ev-a")
    until(lambda: a.state == "failed" and c.state == "running")
    assert a.error == "RuntimeError: no clip from ['pole-9']" and a.archive is None
    run.finish("ev-b")
    run.finish("ev-c")
    until(lambda: b.state == c.state == "done")


def test_at_least_one_case_at_a_time(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        CaseJobs(Cases(), tmp_path, Clock(), running=0)
