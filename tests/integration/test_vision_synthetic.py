"""The analysis pipeline on the synthetic street: IR switches, a walker, a mask.

Frames come from :class:`hw.camera.synthetic.SyntheticSource` (not paced: timestamps advance
by exactly 1/fps), 640x360 at 10 fps with a 320x180 lores stream. Object detection is off
(the synthetic walker is a set of grey bars, not something the SSD calls a person); these
tests are about motion and motion events.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw.camera.synthetic import SceneScript, SyntheticSource, Walker
from node.clock import FakeClock
from node.config import Config
from node.events import PublishEvent
from node.vision.analyzer import Analyzer

W, H, FPS = 640, 360, 10.0


def source(script: SceneScript, seconds: float) -> SyntheticSource:
    return SyntheticSource(W, H, FPS, (320, 180), FakeClock(), script=script, realtime=False,
                           max_frames=int(seconds * FPS))


def motion_starts(src: SyntheticSource, *, masks=(), on_frame=None) -> tuple[list[float], Analyzer]:
    cfg = Config()
    motion = dataclasses.replace(cfg.motion, masks=[list(m) for m in masks])
    an = Analyzer(motion, dataclasses.replace(cfg.detect, enabled=False), FakeClock(), threaded=False)
    starts = []
    t0 = None
    for f in src.frames():
        t0 = f.mono if t0 is None else t0
        if on_frame is not None:
            on_frame(f, an)
        for a in an.process(f):
            if isinstance(a, PublishEvent) and a.payload["phase"] == "start":
                assert a.payload["kind"] == "motion"
                starts.append(f.mono - t0)
    return starts, an


def step_light(at_s: float, before: float, after: float):
    return lambda t: before if t < at_s else after


@pytest.mark.parametrize("before, after", [(1.0, 0.25), (0.25, 1.0)], ids=["day-to-night", "night-to-day"])
def test_ir_switch_raises_no_motion_event(before, after):
    starts, an = motion_starts(source(SceneScript(illumination=step_light(3.0, before, after)), 8.0))
    assert starts == []
    assert an.health()["motion"]["rebaselines"] >= 1  # it was seen and handled as a light jump


def test_ir_switch_with_the_controllers_rebaseline_signal():
    """The day/night controller switches IR at 3.0 s and calls rebaseline() right away."""

    def controller(frame, an):
        if frame.seq == 30:
            an.rebaseline()

    script = SceneScript(illumination=step_light(3.0, 1.0, 0.25))
    starts, an = motion_starts(source(script, 8.0), on_frame=controller)
    assert starts == [] and an.health()["motion"]["rebaselines"] >= 1


def first_visible_s(script: SceneScript, seconds: float) -> float:
    """Scene time of the first frame in which the walker changes any pixel."""
    with_walker = source(script, seconds)
    empty = source(SceneScript(noise_sigma=script.noise_sigma), seconds)
    for seq in range(int(seconds * FPS)):
        if not np.array_equal(with_walker.render(seq)[:H], empty.render(seq)[:H]):
            return seq / FPS
    raise AssertionError("the walker never appears")


@pytest.mark.parametrize("from_x, speed", [(0.0, 0.3), (1.0, 0.3), (0.0, 0.15)],
                         ids=["from-left", "from-right", "slow"])
def test_walker_raises_one_motion_event_within_half_a_second(from_x, speed):
    script = SceneScript(walkers=[Walker(enter_s=2.0, speed=speed, from_x=from_x)])
    visible = first_visible_s(script, 10.0)
    starts, _ = motion_starts(source(script, 8.0))
    assert len(starts) == 1
    assert visible <= starts[0] <= visible + 0.5


def test_walker_in_a_masked_area_raises_nothing():
    script = SceneScript(walkers=[Walker(enter_s=1.0, speed=0.3)])
    street = (0.0, 0.45, 1.0, 0.45, 1.0, 1.0, 0.0, 1.0)  # everything below the building fronts
    starts, _ = motion_starts(source(script, 6.0), masks=[street])
    assert starts == []
    upper = (0.0, 0.0, 1.0, 0.0, 1.0, 0.3, 0.0, 0.3)  # a mask elsewhere changes nothing
    starts, _ = motion_starts(source(script, 6.0), masks=[upper])
    assert len(starts) == 1


def test_ir_switch_while_someone_walks_keeps_one_event_per_walker():
    script = SceneScript(walkers=[Walker(enter_s=1.0, speed=0.3)], illumination=step_light(3.0, 1.0, 0.25))
    starts, _ = motion_starts(source(script, 8.0))
    assert 1 <= len(starts) <= 2  # the walker's event; at most one restart after the re-baseline
    assert starts[0] < 2.0
