"""Night nuisances for the synthetic street: what makes IR cameras raise false alarms.

Users of pole and trail cameras keep reporting the same night false alarms: insects and
spiders close to the lens (lit by the camera's own IR illuminator: large, blurred, very
bright, fast and erratic, or a spider swaying on its thread), headlight sweeps (a pool of
light gliding over walls and road as a car turns), and rain streaks (short bright lines,
a different set in every frame). They are drawn here onto the luma plane of a synthetic
frame, after the scene's illumination, as a pure function of scene time and frame number
(the same frame gives the same pixels), so tests can measure how the vision pipeline
treats each of them.

Also: ``grain``, extra sensor noise added after the illumination (an IR picture is a dark
scene amplified by the sensor's gain: the grain does not shrink with the light).

Cost at 640x360: an insect ≈0.1 ms, a headlight pool ≈1 ms, 60 rain streaks ≈0.3 ms.
Thread: pure functions; any thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Insect:
    """An insect (``kind="moth"``) or spider (``kind="spider"``) just in front of the lens.

    ``enter_s``/``leave_s``: scene times it is there. ``size``: radius relative to the frame
    height (an out-of-focus blob: 0.05-0.15). ``x``/``y``: relative centre of its flight.
    A moth darts about fast and erratically (a different spot every frame at 10 fps); a
    spider on its thread sways slowly around its spot. Both are near white under IR.
    """

    enter_s: float
    leave_s: float
    kind: str = "moth"
    size: float = 0.08
    x: float = 0.5
    y: float = 0.4
    luma: int = 245
    seed: int = 1


@dataclass(frozen=True)
class Headlight:
    """A headlight pool sweeping across the scene from ``from_x`` to ``to_x`` (relative).

    ``y``: relative height of the pool's centre; ``radius``: relative to the frame width;
    ``gain``: brightening at the pool's centre (2.5 = the lit surface is 3.5x as bright).
    """

    enter_s: float
    duration_s: float = 2.0
    from_x: float = -0.2
    to_x: float = 1.2
    y: float = 0.7
    radius: float = 0.18
    gain: float = 2.5


@dataclass(frozen=True)
class Rain:
    """Rain streaks between ``start_s`` and ``end_s``: ``per_frame`` bright slanted lines,
    ``length`` relative to the frame height, a fresh random set in every frame."""

    start_s: float
    end_s: float
    per_frame: int = 60
    length: float = 0.06
    luma: int = 70
    seed: int = 11


def add_grain(y: np.ndarray, sigma: float, seq: int) -> None:
    """Add zero-mean Gaussian grain of ``sigma`` levels (in place, int16 plane)."""
    rng = np.random.default_rng(1000 + seq)
    y += np.rint(rng.standard_normal(y.shape, dtype=np.float32) * sigma).astype(np.int16)


def draw_insect(y: np.ndarray, ins: Insect, t: float) -> None:
    """Blend a soft bright disc at the insect's position at scene time ``t`` (in place)."""
    if not ins.enter_s <= t < ins.leave_s:
        return
    h, w = y.shape
    dt = t - ins.enter_s
    if ins.kind == "spider":
        # swaying on its thread: ±4 % of the width, a 2 s period
        cx = ins.x + 0.04 * math.sin(2 * math.pi * dt / 2.0 + ins.seed)
        cy = ins.y + 0.01 * math.sin(2 * math.pi * dt / 1.3)
    else:
        # darting: two fast incommensurate swings (≈0.3 of the frame per 0.1 s) plus jitter
        rng = np.random.default_rng(ins.seed * 7919 + round(t * 1000))
        cx = ins.x + 0.35 * math.sin(2 * math.pi * 2.3 * dt + ins.seed) + rng.uniform(-0.05, 0.05)
        cy = ins.y + 0.25 * math.sin(2 * math.pi * 3.1 * dt) + rng.uniform(-0.05, 0.05)
    r = max(2.0, ins.size * h)
    px, py = cx * w, cy * h
    x0, x1 = max(0, int(px - r)), min(w, int(px + r) + 1)
    y0, y1 = max(0, int(py - r)), min(h, int(py + r) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    xs = (np.arange(x0, x1) - px) / r
    ys = (np.arange(y0, y1) - py) / r
    d2 = ys[:, None] ** 2 + xs[None, :] ** 2
    alpha = np.clip(1.0 - d2, 0.0, 1.0) ** 0.7  # out of focus: soft, no edge
    patch = y[y0:y1, x0:x1]
    patch[:] = np.rint(patch + alpha * (ins.luma - patch)).astype(np.int16)


def draw_headlight(y: np.ndarray, hl: Headlight, t: float) -> None:
    """Brighten a Gaussian pool of light at its position at scene time ``t`` (in place)."""
    dt = t - hl.enter_s
    if not 0.0 <= dt < hl.duration_s:
        return
    h, w = y.shape
    cx = (hl.from_x + (hl.to_x - hl.from_x) * dt / hl.duration_s) * w
    cy = hl.y * h
    r = hl.radius * w
    gx = np.exp(-(((np.arange(w) - cx) / r) ** 2)).astype(np.float32)
    gy = np.exp(-(((np.arange(h) - cy) / (0.6 * r)) ** 2)).astype(np.float32)
    cols = np.nonzero(gx > 0.01)[0]
    rows = np.nonzero(gy > 0.01)[0]
    if not len(cols) or not len(rows):
        return
    c0, c1, r0, r1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    gain = 1.0 + hl.gain * (gy[r0:r1, None] * gx[None, c0:c1])
    # a little light reaches even black surfaces: lift as well as multiply
    patch = y[r0:r1, c0:c1]
    patch[:] = np.rint(patch * gain + 12.0 * (gain - 1.0)).astype(np.int16)


def draw_rain(y: np.ndarray, rain: Rain, t: float, seq: int) -> None:
    """Add this frame's rain streaks (in place): thin lines, slanted, at random places."""
    if not rain.start_s <= t < rain.end_s:
        return
    h, w = y.shape
    rng = np.random.default_rng(rain.seed * 104729 + seq)
    n = rain.per_frame
    x0 = rng.uniform(0, w, n)
    y0 = rng.uniform(-0.05 * h, h, n)
    length = rain.length * h * rng.uniform(0.6, 1.4, n)
    steps = max(2, int(rain.length * h * 1.4))
    s = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    xs = (x0[:, None] + 0.2 * length[:, None] * s[None, :]).astype(np.intp).ravel()
    ys = (y0[:, None] + length[:, None] * s[None, :]).astype(np.intp).ravel()
    ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    y[ys[ok], xs[ok]] += rain.luma
