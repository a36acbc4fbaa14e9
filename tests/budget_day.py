"""A simulated 24 h day for the storage budget: scenes per light phase, encoded by the real codec.

A day is four phases (times in the ward's local day): **day** traffic 07:00-17:30, **dusk**
17:30-18:30, IR **night** with grain 18:30-05:30, **dawn** 05:30-07:00. Each phase has a short
sample of frames — the synthetic street (walkers by day, a dim monochrome picture with fresh
sensor grain at night) or real footage from ``../shared/media/videos`` (day: cars in a
parking lot; night: the IR/streetlamp clips; dusk/dawn: the day clip darkened, with grain).

Encoding a real day at 1080p would take hours here, so the day is *sampled*: each (phase,
settings) pair is encoded once by :class:`hw.encode.libav.LibavEncoder` (the node's encoder)
for a few GOPs, and its bytes per second, PSNR and SSIM (of the decoded recording against the
source, luma) scale to the phase's duration. The control loop runs under an injected clock
over simulated days and sees these bytes, phase by phase, as the node's meter would.

Used by ``tests/unit/test_budget_loop.py`` (small frames) and ``bench/bench_budget.py``
(1080p15, the table in docs/recording.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

from hw.camera.synthetic import SceneScript, SyntheticSource, Walker
from hw.encode.libav import LibavEncoder
from hw.encode.rate import RateSettings
from hw.media import Frame, StreamInfo
from node.clock import FakeClock


def videos() -> Path:
    """The shared clips (``../shared`` beside the repository, or ``$CAMNODE_SHARED``)."""
    repo = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("CAMNODE_SHARED", repo.parent / "shared")).resolve() / "media" / "videos"

#: (name, start hour, end hour, the node's day/night mode during it)
PHASES = (("dawn", 5.5, 7.0, "day"), ("day", 7.0, 17.5, "day"), ("dusk", 17.5, 18.5, "day"),
          ("night", 18.5, 29.5, "night"))
#: real clip per phase: (file, luma gain, added grain sigma)
REAL = {"day": ("car-detection.mp4", 1.0, 0.0), "dusk": ("car-detection.mp4", 0.45, 3.0),
        "dawn": ("car-detection.mp4", 0.55, 3.0), "night": ("night-person-walking.avi", 1.0, 0.0)}
NIGHT_IR_CLIP = "night-ir-cat.avi"


def phase_at(hour_of_day: float) -> tuple[str, str]:
    """(scene phase, day/night mode) at a local hour 0-24."""
    h = hour_of_day % 24.0
    for name, a, b, mode in PHASES:
        if a <= h < b or a <= h + 24.0 < b:
            return name, mode
    raise AssertionError(h)


def phase_hours() -> dict[str, float]:
    return {name: b - a for name, a, b, _ in PHASES}


def _grain(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    return rng.normal(0.0, sigma, shape).astype(np.float32)


def synthetic_frames(phase: str, width: int, height: int, fps: float, n: int) -> list[np.ndarray]:
    """yuv420p frames of the synthetic street in ``phase`` (walkers by day; dim, monochrome,
    with fresh grain every frame at night)."""
    level, sigma = {"day": (1.0, 0.0), "still": (1.0, 0.0), "dusk": (0.55, 3.0),
                    "dawn": (0.6, 3.0), "night": (0.3, 6.0)}[phase]
    walkers = [Walker(enter_s=0.0, speed=0.25), Walker(enter_s=1.5, from_x=1.0, speed=0.2)] \
        if phase in ("day", "dusk") else []
    src = SyntheticSource(width, height, fps, (64, 48), FakeClock(datetime(2026, 3, 1, tzinfo=UTC)),
                          script=SceneScript(walkers=walkers, illumination=lambda _t: level),
                          realtime=False, max_frames=n)
    rng = np.random.default_rng(11)
    out = []
    for i in range(n):
        f = src.render(i)
        if sigma:
            y = f[:height].astype(np.float32) + _grain(rng, (height, width), sigma)
            f[:height] = np.clip(y, 0, 255).astype(np.uint8)
        out.append(f)
    return out


def real_frames(path: Path, width: int, height: int, n: int, gain: float = 1.0,
                sigma: float = 0.0) -> list[np.ndarray]:
    """``n`` yuv420p frames of a shared clip scaled to ``width``x``height`` (looped)."""
    import av

    frames: list[np.ndarray] = []
    rng = np.random.default_rng(5)
    while len(frames) < n:
        with av.open(str(path)) as c:
            for fr in c.decode(video=0):
                a = fr.reformat(width, height, "yuv420p").to_ndarray()
                if gain != 1.0 or sigma:
                    y = a[:height].astype(np.float32) * gain + (
                        _grain(rng, (height, width), sigma) if sigma else 0.0)
                    a[:height] = np.clip(y, 0, 255).astype(np.uint8)
                    if gain < 0.5:
                        a[height:] = 128
                frames.append(a)
                if len(frames) >= n:
                    break
    return frames


def scene_frames(kind: str, phase: str, width: int, height: int, fps: float,
                 n: int) -> list[np.ndarray]:
    if kind == "synthetic":
        return synthetic_frames(phase, width, height, fps, n)
    name, gain, sigma = REAL[phase]
    if kind == "real-ir" and phase == "night":
        name = NIGHT_IR_CLIP
    return real_frames(videos() / name, width, height, n, gain, sigma)


@dataclass(frozen=True)
class Sample:
    bytes_per_s: float
    psnr: float
    ssim: float
    keyframe_bytes: float
    #: CPU seconds of the encoder alone (for same-run ratios, never a target)
    encode_cpu_s: float = 0.0


def psnr_ssim(ref: np.ndarray, dec: np.ndarray) -> tuple[float, float]:
    """Luma PSNR (dB) and SSIM (Wang et al., 11x11 Gaussian window σ 1.5) of two Y planes."""
    import cv2

    a, b = ref.astype(np.float64), dec.astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    psnr = 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return psnr, float(s.mean())


def encode_sample(frames: list[np.ndarray], width: int, height: int, fps: float,
                  rate: RateSettings, *, quality_every: int = 3, preset: str = "ultrafast") -> Sample:
    """Encode ``frames`` with the node's encoder at ``rate``; bytes/s, and the quality of the
    decoded result against the source on every ``quality_every``-th frame."""
    import av

    enc = LibavEncoder(rate.bitrate_kbps, rate.gop_s, rate=rate, preset=preset)
    enc.start(StreamInfo("h264", width, height, fps))
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    packets = []
    work = [Frame(seq=i, mono=i / fps, utc=t0, width=width, height=height, main=f.copy(),
                  lores=f[:height:8, ::8]) for i, f in enumerate(frames)]
    cpu0 = time.process_time()
    for fr in work:
        packets += enc.encode(fr)
    packets += enc.flush()
    cpu = time.process_time() - cpu0
    enc.close()
    dec = av.CodecContext.create("h264", "r")
    scores = []
    i = 0
    for p in packets:
        for fr in dec.decode(av.Packet(p.data)):
            if i % quality_every == 0:
                scores.append(psnr_ssim(frames[i][:height], fr.to_ndarray()[:height]))
            i += 1
    for fr in dec.decode(None):
        if i % quality_every == 0:
            scores.append(psnr_ssim(frames[i][:height], fr.to_ndarray()[:height]))
        i += 1
    total = sum(p.size for p in packets)
    keys = [p.size for p in packets if p.keyframe]
    return Sample(total / (len(frames) / fps), float(np.mean([s[0] for s in scores])),
                  float(np.mean([s[1] for s in scores])), float(np.mean(keys)), cpu)


class DaySampler:
    """Bytes/s and quality per (phase, settings), encoded once each (the day is sampled)."""

    def __init__(self, kind: str, width: int, height: int, fps: float, seconds: float) -> None:
        self.kind, self.width, self.height, self.fps = kind, width, height, fps
        self.n = max(2, round(seconds * fps))
        self.encodes = 0

    @lru_cache(maxsize=16)  # noqa: B019 - one sampler per run; frames are the expensive part
    def frames(self, phase: str) -> list[np.ndarray]:
        return scene_frames(self.kind, phase, self.width, self.height, self.fps, self.n)

    @lru_cache(maxsize=512)  # noqa: B019
    def sample(self, phase: str, rate: RateSettings) -> Sample:
        self.encodes += 1
        return encode_sample(self.frames(phase), self.width, self.height, self.fps, rate,
                             quality_every=6)


@dataclass
class DayRow:
    """One simulated day: knob range, bytes written, the budget, and per phase the last
    (crf, sample) seen."""

    day: int
    crf_min: float
    crf_max: float
    written: float
    budget: float
    phases: dict[str, tuple[float, Sample]]


def simulate_days(kind: str, width: int, height: int, fps: float, days: int, *, card: float,
                  seconds: float = 8.0, grainier_from_day: int | None = None,
                  step_s: float = 1800.0, gop_s: float = 4.0) -> tuple[list[DayRow], int]:
    """The node's budget controller over ``days`` simulated days on an empty ``card``: every
    ``step_s`` the phase's sample bytes at the current settings are "written", the meter's
    observation goes to the loop, the injected clock advances, and the loop ticks (hourly
    steps). Returns the per-day rows and how many real encodes it took."""
    from node.record import capacity
    from node.record.budget import BudgetController, BudgetParams
    from node.record.ratecontrol import DAY_S, Knob

    samplers = {k: DaySampler(k, width, height, fps, seconds) for k in {kind, "real-ir"}}
    clock = FakeClock(datetime(2026, 3, 1, 0, 0, tzinfo=UTC))
    usable0 = card * (1 - capacity.FS_OVERHEAD) - 2e9
    written = [0.0]
    params = BudgetParams(target_days=30, headroom_s=3600, min_free=256 * 2**20, gop_s=gop_s,
                          peak_factor=3.0, event_boost_crf=0.0, step_s=3600, width=width,
                          height=height, fps=fps)
    ctl = BudgetController(params, Knob("crf", 23.0, 42.0), clock,
                           lambda: (written[0], usable0 - written[0], 0.0))
    ctl.plan_now()
    rows: list[DayRow] = []
    day_bytes, day_q, seen = 0.0, [], {}
    per_day = int(DAY_S / step_s)
    for i in range(days * per_day):
        t = i * step_s
        day_no = i // per_day + 1
        phase, mode = phase_at((t % DAY_S) / 3600)
        k = "real-ir" if (grainier_from_day and day_no >= grainier_from_day and phase == "night"
                          and kind == "real") else kind
        rate = ctl.settings
        s = samplers[k].sample(phase, rate)
        nbytes = s.bytes_per_s * step_s
        written[0] += nbytes
        day_bytes += nbytes
        day_q.append(rate.crf)
        seen[phase] = (rate.crf, s)
        clock.advance(step_s)
        ctl.loop.observe(clock.monotonic(), mode, step_s, nbytes, ctl.loop.x_now)
        ctl.tick()
        if (i + 1) % per_day == 0:
            assert ctl.decision is not None
            rows.append(DayRow(day_no, min(day_q), max(day_q), day_bytes,
                               ctl.decision.budget_bytes_per_day, dict(seen)))
            day_bytes, day_q = 0.0, []
    return rows, sum(s.encodes for s in samplers.values())


def days_on(card: float, bytes_per_day: float) -> float:
    """Days of footage ``card`` holds at ``bytes_per_day`` (reserve 2 GB, 1 h floor)."""
    from node.record import capacity

    floor = bytes_per_day / 24
    return (card * (1 - capacity.FS_OVERHEAD) - 2e9 - floor) / bytes_per_day
