"""The Analyzer's own behaviour: idle cost, lores-only sources, health, latency on a live clock.

Uses the real model and a real street photo (``peds_0.jpg``: people crossing, parked cars),
whose lower half is hidden behind a grey patch and then revealed, so that motion appears
exactly where people are.
"""

from __future__ import annotations

import dataclasses
import io
import time
from datetime import datetime, timedelta

import av
import numpy as np
import pytest

from hw.camera.base import luma_downscale
from hw.camera.synthetic import SceneScript, SyntheticSource
from hw.media import Frame
from node.clock import FakeClock
from node.config import Config
from node.events import PublishEvent, PublishSnapshot
from node.vision.analyzer import Analyzer
from node.vision.snapshot import _halve

T0 = FakeClock().utc()


@pytest.fixture(scope="module")
def street(shared_dir) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(photo, photo with the people hidden), yuv420p 960x540."""
    with av.open(str(shared_dir / "media/images/peds_0.jpg")) as c:
        photo = next(c.decode(video=0)).reformat(format="yuv420p").to_ndarray()
    photo, w, h = _halve(photo, 1920, 1080)
    hidden = photo.copy()
    hidden[int(0.05 * h) : int(0.95 * h), int(0.2 * w) : int(0.75 * w)] = 110
    return photo, hidden, w, h


def reveal_frames(street, clock: FakeClock, *, lores_only: bool = False, n: int = 40):
    photo, hidden, w, h = street
    for i in range(n):
        img = hidden if i < 10 else photo
        lores = luma_downscale(img[:h], 320, 180)
        yield Frame(seq=i, mono=clock.monotonic(), utc=clock.utc(), width=w, height=h,
                    main=None if lores_only else img, lores=lores)
        clock.advance(0.1)


def analyzer(shared_dir, clock, **detect) -> Analyzer:
    cfg = Config()
    return Analyzer(cfg.motion, dataclasses.replace(cfg.detect, **detect), clock, threaded=False,
                    base_dir=shared_dir)


def test_idle_frames_are_cheap_and_never_reach_the_model(shared_dir):
    clock = FakeClock()
    src = SyntheticSource(1280, 720, 15.0, (320, 180), clock, script=SceneScript(), realtime=False,
                          max_frames=120)
    an = analyzer(shared_dir, clock)
    costs = []
    for f in src.frames():
        t0 = time.perf_counter()
        assert an.process(f) == []
        costs.append(time.perf_counter() - t0)
    h = an.health()
    # one look at the start (the tiled scan after the background is learnt), none after it
    assert h["detect"]["enabled"] and h["detect"]["inference_calls"] == 1 and h["detect"]["crops"] == 5
    assert h["frames"] == 120 and h["fps"] == pytest.approx(15.0, rel=0.01)


def test_someone_standing_in_the_scene_at_start_is_found_by_the_tiled_scan(shared_dir, street):
    """Nothing moves: the photo from the first frame. Motion alone never looks; the scan does."""
    photo, _, w, h = street

    def still(clock):
        for i in range(30):
            yield Frame(seq=i, mono=clock.monotonic(), utc=clock.utc(), width=w, height=h, main=photo,
                        lores=luma_downscale(photo[:h], 320, 180))
            clock.advance(0.1)

    for scan, events in ((True, 1), (False, 0)):
        clock = FakeClock()
        an = analyzer(shared_dir, clock, scan_on_rebaseline=scan)
        acts = [a for f in still(clock) for a in an.process(f) if isinstance(a, PublishEvent)]
        starts = [a.payload for a in acts if a.payload["kind"] == "object" and a.payload["phase"] == "start"]
        assert len(starts) == events and all(p["classes"] == ["person"] for p in starts)


def test_person_found_and_latency_measured_on_the_live_clock(shared_dir, street):
    clock = FakeClock()
    an = analyzer(shared_dir, clock, scan_on_rebaseline=False)  # motion alone finds them
    starts, snaps = [], []
    for f in reveal_frames(street, clock):
        for a in an.process(f):
            p = a.payload if isinstance(a, PublishEvent) else {}
            if p.get("kind") == "object" and p.get("phase") == "start":
                starts.append((f.mono, p))
            elif isinstance(a, PublishSnapshot):
                snaps.append(a)
    ((published_at, start),) = starts
    assert start["label"] == "person" and 1.0 <= published_at <= 2.0  # revealed at 1.0 s
    start_mono = (datetime.fromisoformat(start["start"].replace("Z", "+00:00")) - T0).total_seconds()
    assert 1.0 <= start_mono <= published_at
    # the clock read when the event was emitted is the frame's own time here (FakeClock)
    assert an.health()["object_event_latency_s"] == pytest.approx(published_at - start_mono, abs=1e-3)
    assert snaps and snaps[0].event_id == start["id"] and snaps[0].jpeg[:2] == b"\xff\xd8"


def test_lores_only_source_still_detects_on_luma(shared_dir, street):
    clock = FakeClock()
    an = analyzer(shared_dir, clock)
    acts = [a for f in reveal_frames(street, clock, lores_only=True) for a in an.process(f)]
    kinds = {(a.payload["kind"], a.payload["phase"]) for a in acts if isinstance(a, PublishEvent)}
    assert ("motion", "start") in kinds and ("object", "start") in kinds  # people, from 320x180 luma
    snaps = [a for a in acts if isinstance(a, PublishSnapshot)]
    assert snaps
    for s in snaps:  # grey snapshots of the lores frame
        with av.open(io.BytesIO(s.jpeg)) as c:
            assert next(c.decode(video=0)).width == 320


def test_rebaseline_before_the_first_frame_and_close_without_frames(shared_dir):
    clock = FakeClock()
    an = analyzer(shared_dir, clock, enabled=False)
    an.rebaseline()
    assert an.close() == []
    h = an.health()
    assert h["detect"]["enabled"] is False and "disabled in config" in h["detect"]["reason"]
    assert h["motion"]["ms"] is None and h["frames"] == 0


def test_close_ends_open_events_at_the_last_frame(shared_dir, street):
    clock = FakeClock()
    an = analyzer(shared_dir, clock)
    for f in reveal_frames(street, clock, n=25):
        an.process(f)
        last = f
    final = [a.payload for a in an.close() if isinstance(a, PublishEvent)]
    assert final and all(p["phase"] == "end" and p["end_reason"] == "shutdown" for p in final)
    assert all(p["end"] <= (last.utc + timedelta(seconds=0.001)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
               for p in final)


def test_a_timeline_going_back_ends_events_and_starts_afresh(shared_dir):
    from hw.camera.synthetic import Walker

    script = SceneScript(walkers=[Walker(enter_s=0.5, speed=0.3)])
    an = analyzer(shared_dir, FakeClock(), enabled=False)
    phases = []
    for lap in range(2):  # the same 3 s twice, timestamps restarting at 0 (a looped file)
        src = SyntheticSource(640, 360, 10.0, (320, 180), FakeClock(), script=script, realtime=False,
                              max_frames=30)
        for f in src.frames():
            phases += [(lap, a.payload["phase"], a.payload.get("end_reason"))
                       for a in an.process(f) if isinstance(a, PublishEvent)]
    assert phases == [(0, "start", None), (1, "end", "shutdown"), (1, "start", None)]


def test_a_person_who_stops_moving_stays_in_the_event(shared_dir, street):
    """People revealed at 1 s, then nothing moves for 30 s: one open event, checked rarely."""
    clock = FakeClock()
    an = analyzer(shared_dir, clock)
    phases = []
    for f in reveal_frames(street, clock, n=310):
        phases += [(round(f.mono, 1), a.payload["phase"]) for a in an.process(f)
                   if isinstance(a, PublishEvent) and a.payload["kind"] == "object"]
    assert [p for _, p in phases if p != "update"] == ["start"]  # never ended, never split
    assert an.state.object is not None
    assert an.health()["motion"]["moving"] is False  # the still people joined the background
    calls = an.health()["detect"]["inference_calls"]
    still_s = Config().detect.still_s
    assert calls <= 6 + 30 / still_s + 2  # confirmation, then one look every still_s


@pytest.mark.parametrize("limit, asks, granted", [
    # (time s, calls asked) in order → granted?
    (5.0, [(0.0, 2), (0.2, 2), (0.4, 2), (0.6, 1), (1.05, 2), (1.25, 2), (1.3, 1)],
     [True, True, False, True, True, True, False]),
    (5.0, [(0.0, 5), (0.2, 1), (1.0, 1)], [True, False, True]),  # the five-call scan fills a second
    (3.0, [(0.0, 5), (0.5, 1), (1.0, 5)], [True, False, True]),  # larger than the budget: runs alone
    (0.0, [(0.0, 5), (0.1, 5), (0.2, 5)], [True, True, True]),  # no budget
])
def test_inference_budget_in_model_calls_per_second(limit, asks, granted):
    from types import SimpleNamespace

    from node.vision.schedule import Scheduler
    from node.vision.tracks import Persistence

    sched = Scheduler(SimpleNamespace(max_calls_s=limit), Persistence())
    assert [sched.within_budget(t, n) for t, n in asks] == granted


def test_motion_night_mode_from_a_grey_picture_or_the_controller(shared_dir, street):
    photo, _, w, h = street
    grey = photo.copy()
    grey[h:] = 128
    clock = FakeClock()
    an = analyzer(shared_dir, clock, enabled=False)

    def one(img):
        an.process(Frame(seq=0, mono=clock.monotonic(), utc=clock.utc(), width=w, height=h, main=img,
                         lores=luma_downscale(img[:h], 320, 180)))
        clock.advance(0.1)
        return an.health()["motion"]["night"]

    assert [one(photo), one(grey), one(photo)] == [False, True, False]  # colour: day; none: night
    an.set_night(True)  # the controller switched IR on: night whatever the tint
    assert one(photo) is True
    an.set_night(False)
    assert one(photo) is False
