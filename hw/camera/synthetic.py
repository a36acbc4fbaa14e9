"""A deterministic street scene: the camera of the demo and of the tests.

What it draws, at any size: a static street (sky, building fronts, pavement, road with lane
marks), sensor noise, people ("walkers") crossing at set times, and an illumination level
that can drop to night (the IR switch: luma falls, chroma goes grey), and the night's
nuisances (insects and spiders at the lens, headlight sweeps, rain, sensor grain; see
:mod:`hw.camera.night_nuisances`). Everything is a pure function of the frame number, so two
runs give the same pixels.

Cost: the background and a bank of noise planes are rendered once; a frame is a copy of the
background plus one noise plane, plus the walkers' rectangles, plus one multiply when the
illumination is not 1.0 (≈2-4 ms at 1080p here).
Thread: ``frames()`` on the capture thread; ``set_illumination``/``add_walker`` from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

import hw.camera.night_nuisances as nn
from hw.camera.base import luma_downscale
from hw.media import Frame

_NOISE_BANK = 4


@dataclass(frozen=True)
class Walker:
    """A person crossing the frame.

    ``enter_s``: scene time at which the walker appears at the ``from_x`` edge; ``speed``:
    fraction of the frame width per second; ``y``: relative vertical position of the feet;
    ``height``: relative body height. ``from_x`` 0.0 walks rightwards, 1.0 leftwards.
    """

    enter_s: float
    speed: float = 0.15
    y: float = 0.85
    height: float = 0.35
    from_x: float = 0.0
    luma: int = 40


@dataclass
class SceneScript:
    """What happens in the scene over time (scene time starts at 0 at the first frame)."""

    walkers: list[Walker] = field(default_factory=list)
    #: illumination as a function of scene time (1.0 = day; 0.25 ≈ night under IR)
    illumination: Callable[[float], float] | None = None
    noise_sigma: float = 2.0
    #: when set, the walkers' schedule repeats with this period (the endless demo)
    repeat_s: float | None = None
    #: night nuisances (see :mod:`hw.camera.night_nuisances`), drawn after the illumination
    insects: list[nn.Insect] = field(default_factory=list)
    headlights: list[nn.Headlight] = field(default_factory=list)
    rain: list[nn.Rain] = field(default_factory=list)
    #: sensor grain added after the illumination (IR night: the gain amplifies noise), levels
    grain_sigma: float = 0.0


def demo_script() -> SceneScript:
    """A walker every 12 s from alternating sides, forever (the demo)."""

    return SceneScript(walkers=[Walker(enter_s=3.0), Walker(enter_s=15.0, from_x=1.0)], repeat_s=24.0)


class SyntheticSource:
    """The synthetic street as a :class:`~hw.camera.base.FrameSource`.

    ``clock`` must provide ``monotonic()``, ``utc()`` and ``sleep()``; with ``realtime`` the
    source paces itself at ``fps`` on that clock, otherwise frames come as fast as they are
    drawn and their timestamps still advance by exactly 1/fps (scene time = seq / fps).
    ``max_frames`` ends the source (tests); ``None`` runs until ``close()``.
    """

    encoded = False

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        lores: tuple[int, int],
        clock,
        *,
        script: SceneScript | None = None,
        realtime: bool = True,
        max_frames: int | None = None,
        seed: int = 7,
    ) -> None:
        self.name = "synthetic"
        self.width, self.height, self.fps = width, height, fps
        self.lores_size = lores
        self._clock = clock
        self._script = script or demo_script()
        self._realtime = realtime
        self._max = max_frames
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._forced_level: float | None = None
        self._extra: list[Walker] = []
        rng = np.random.default_rng(seed)
        self._bg_y = _draw_street(width, height)
        self._bg_uv = _street_chroma(width, height)
        sigma = self._script.noise_sigma
        # int8 planes (2 MB each at 1080p), drawn in float32 rows to keep the peak small
        self._noise = [np.empty((height, width), dtype=np.int8) for _ in range(_NOISE_BANK)]
        for plane in self._noise:
            for r0 in range(0, height, 64):
                rows = rng.standard_normal((min(64, height - r0), width), dtype=np.float32) * sigma
                plane[r0 : r0 + rows.shape[0]] = np.clip(np.rint(rows), -127, 127)
        self.frames_out = 0

    # -- controls -------------------------------------------------------------------
    def set_illumination(self, level: float | None) -> None:
        """Force the light level (1.0 day, ~0.25 night); ``None`` returns to the script."""
        with self._lock:
            self._forced_level = level

    def add_walker(self, walker: Walker) -> None:
        with self._lock:
            self._extra.append(walker)

    def close(self) -> None:
        self._stop.set()

    def describe(self) -> dict[str, object]:
        return {"backend": "synthetic", "width": self.width, "height": self.height,
                "fps": self.fps, "frames": self.frames_out}

    # -- frames ---------------------------------------------------------------------
    def level_at(self, t: float) -> float:
        with self._lock:
            if self._forced_level is not None:
                return self._forced_level
        f = self._script.illumination
        return 1.0 if f is None else float(f(t))

    def render(self, seq: int) -> np.ndarray:
        """The yuv420p main image of frame ``seq`` (pure function of ``seq`` and the controls)."""
        t = seq / self.fps
        if self._script.repeat_s:
            t %= self._script.repeat_s
        w, h = self.width, self.height
        y = self._bg_y.astype(np.int16)
        y += self._noise[seq % _NOISE_BANK]
        with self._lock:
            walkers = list(self._script.walkers[: _active_window(self._script.walkers, t)]) + self._extra
        for wk in walkers:
            _draw_walker(y, wk, t, w, h)
        level = self.level_at(t)
        out = np.empty((h * 3 // 2, w), dtype=np.uint8)
        if level != 1.0:
            np.multiply(y, level, out=y, casting="unsafe")
        sc = self._script
        for hl in sc.headlights:
            nn.draw_headlight(y, hl, t)
        for ins in sc.insects:
            nn.draw_insect(y, ins, t)
        for rain in sc.rain:
            nn.draw_rain(y, rain, t, seq)
        if sc.grain_sigma > 0:
            nn.add_grain(y, sc.grain_sigma, seq)
        np.clip(y, 0, 255, out=y)
        out[:h] = y
        if level < 0.5:  # IR night: the IR-cut filter is out, the picture is monochrome
            out[h:] = 128
        else:
            out[h:] = self._bg_uv
        return out

    def frames(self) -> Iterator[Frame]:
        start_mono = self._clock.monotonic()
        start_utc = self._clock.utc()
        seq = 0
        period = 1.0 / self.fps
        while not self._stop.is_set() and (self._max is None or seq < self._max):
            due = start_mono + seq * period
            if self._realtime:
                wait = due - self._clock.monotonic()
                if wait > 0:
                    self._clock.sleep(wait)
                mono, utc = self._clock.monotonic(), self._clock.utc()
            else:
                mono, utc = due, start_utc + timedelta(seconds=seq * period)
            main = self.render(seq)
            lores = luma_downscale(main[: self.height], *self.lores_size)
            yield Frame(seq=seq, mono=mono, utc=utc, width=self.width, height=self.height,
                        main=main, lores=lores)
            seq += 1
            self.frames_out = seq


def _active_window(walkers: list[Walker], t: float) -> int:
    """Number of scripted walkers that may be visible at ``t`` (scripts are sorted by time)."""
    n = 0
    for n, wk in enumerate(walkers):
        if wk.enter_s > t:
            return n
    return len(walkers)


def _draw_walker(y: np.ndarray, wk: Walker, t: float, w: int, h: int) -> None:
    dt = t - wk.enter_s
    if dt < 0:
        return
    travelled = dt * wk.speed
    if travelled > 1.2:
        return
    body_h = max(4, int(wk.height * h))
    body_w = max(2, body_h // 4)
    cx = (-0.1 + travelled) if wk.from_x < 0.5 else (1.1 - travelled)
    x0 = int(cx * w) - body_w // 2
    feet = int(wk.y * h)
    top = feet - body_h
    head = body_h // 6
    # legs swing with the step: two bars whose spread alternates
    step = int(4 * dt) % 2
    parts = [
        (top, top + head, x0 + body_w // 4, x0 + 3 * body_w // 4, wk.luma + 60),  # head
        (top + head, top + body_h * 3 // 5, x0, x0 + body_w, wk.luma),  # torso
        (top + body_h * 3 // 5, feet, x0 + (0 if step else body_w // 8), x0 + body_w // 3, wk.luma),
        (top + body_h * 3 // 5, feet, x0 + 2 * body_w // 3, x0 + body_w - (0 if step else body_w // 8),
         wk.luma),
    ]
    for r0, r1, c0, c1, val in parts:
        r0, r1 = max(0, r0), min(h, r1)
        c0, c1 = max(0, c0), min(w, c1)
        if r0 < r1 and c0 < c1:
            y[r0:r1, c0:c1] = val


def _draw_street(w: int, h: int) -> np.ndarray:
    y = np.empty((h, w), dtype=np.uint8)
    rows = np.arange(h)[:, None]
    sky = (200 - 60 * rows / max(1, h)).astype(np.uint8)
    y[:] = sky
    horizon = int(h * 0.45)
    # building fronts with windows
    rng = np.random.default_rng(3)
    x = 0
    while x < w:
        bw = int(w * rng.uniform(0.08, 0.2))
        top = int(h * rng.uniform(0.1, 0.3))
        shade = int(rng.uniform(90, 160))
        y[top:horizon, x : x + bw] = shade
        for wy in range(top + h // 40, horizon - h // 30, max(4, h // 14)):
            for wx in range(x + bw // 8, x + bw - bw // 8, max(4, bw // 4)):
                y[wy : wy + max(2, h // 40), wx : wx + max(2, bw // 10)] = shade - 50
        x += bw + max(2, w // 100)
    y[horizon : int(h * 0.6)] = 150  # pavement
    y[int(h * 0.6) :] = 85  # road
    mark_row = int(h * 0.8)
    for mx in range(0, w, max(8, w // 10)):
        y[mark_row : mark_row + max(2, h // 120), mx : mx + max(4, w // 25)] = 220
    return y


def _street_chroma(w: int, h: int) -> np.ndarray:
    """U and V planes (packed as yuv420p lays them out under Y): warm buildings, blue sky."""
    cw, ch = w // 2, h // 2
    u = np.full((ch, cw), 128, dtype=np.uint8)
    v = np.full((ch, cw), 128, dtype=np.uint8)
    u[: int(ch * 0.25)] = 150
    v[int(ch * 0.25) : int(ch * 0.45)] = 140
    return np.concatenate([u.reshape(-1), v.reshape(-1)]).reshape(h // 2, w)
