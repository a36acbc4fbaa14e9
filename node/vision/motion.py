"""Motion detection on the lores luma frames, in numpy.

The frame is cut into square *cells* (``cell_px`` lores pixels a side) and each cell is
represented by the mean of four of its pixels (a 2x2 grid of samples): that averages sensor
noise by 2x for the price of four strided views, and leaves a grid small enough (80x45 cells
for a 320x180 lores frame) that every per-frame step costs microseconds.

Per frame:

1. **Global light change.** The median ratio of the current cells to the background, on a
   fixed subsample, measures the frame's overall brightness change (auto-exposure, a cloud,
   dusk). When it is not 1, the background's tones are mapped onto the frame's by matching
   65 quantiles of the two subsamples (a monotone tone curve: gain, offset, gamma and
   saturation alike), so whole-scene light changes are not motion.
2. **Change test.** A cell changed when ``|cell - background|`` exceeds both ``threshold``
   (luma levels) and ``noise_factor`` x that cell's running mean absolute deviation: noisy
   cells (night, foliage, the sky) need a bigger change than quiet ones. At night
   (:meth:`MotionDetector.set_night`: the picture has no colour, or the day/night controller
   says so) ``night_threshold`` and ``night_noise_factor`` apply, against a noise map kept
   apart from the day's.
3. **Global change.** If the median brightness ratio jumps by more than ``jump_gain`` (25 %)
   in one frame, or more than ``global_fraction`` of the unmasked cells changed at once
   (the IR illuminator or IR-cut filter switching, headlights sweeping the whole scene), the
   frame is not motion: the background is replaced by the current frame and the next
   ``settle_frames`` frames only re-learn it. :meth:`MotionDetector.rebaseline` asks for the
   same from any thread (the day/night controller calls it when it switches IR).
4. **Regions** (:mod:`node.vision.movers`). Changed cells are pooled into blocks and labelled
   into regions; a region counts when it holds at least ``min_area`` (fraction of the frame)
   of changed cells, or ``min_area_px`` main-image pixels shrinking towards the top of the
   frame (far = small). Along tracks, at night a cell counts only when it changed on
   ``persist_frames`` consecutive frames, and a small region counts when its track's cells
   add up and link from frame to frame. Masked cells (config polygons in relative
   coordinates) never count.
5. **Background update.** Exponential running average with time constant ``background_s``
   (the weight of each frame is computed from the frame interval, so the behaviour does not
   depend on the frame rate). The update is the same for moving and still cells: a selective
   update (slower where something moves) leaves a long-lived "ghost" where a person stood
   for a minute and then left (measured on ``one-by-one-person-detection.mp4``). A person who
   stops moving is absorbed within a few time constants; the person detector keeps such a
   person in the event by re-checking its last box (see :mod:`node.vision.schedule`).
   Cells that differ from the background but have stayed *still* (equal to a fast average,
   time constant 0.3 s) are pulled into the background with the shorter time constant
   ``still_s``: a parked car, a person standing at a table, and the ghost such a person
   leaves behind after walking away all stop being motion within a few seconds. Where
   something passes the background moves at most ``passing_step`` levels a frame (an
   insect under IR, 200 levels brighter, leaves no bright trail). The noise estimate is
   refreshed every 4th frame (a running mean over a mode's first updates).

Cost: ≈40-50 µs per idle 320x180 frame here (a dozen numpy calls on 3,600 cells), plus
≈30-40 µs for pooling and labelling when something moves. Thread: :meth:`detect` on the analysis thread
only; :meth:`rebaseline` from any thread.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from node.vision.boxes import Box  # here in lores pixels
from node.vision.movers import Movers, min_cells_by_row


@dataclass(frozen=True, slots=True)
class MotionParams:
    """Sensitivity settings (the ``[motion]`` config section maps onto these)."""

    cell_px: int = 4
    threshold: float = 14.0
    noise_factor: float = 4.0
    min_area: float = 0.005
    background_s: float = 10.0
    still_s: float = 2.0
    global_fraction: float = 0.6
    jump_gain: float = 0.25
    settle_frames: int = 3
    masks: tuple[tuple[float, ...], ...] = ()
    # Night mode (IR, monochrome picture): its own sensitivity, its own noise map.
    night_threshold: float = 14.0
    night_noise_factor: float = 4.0
    # Smallest region in main-image pixels at the bottom row (0: use ``min_area``), shrinking
    # linearly to ``far_scale`` of that at the top row (far away = small); ``main_scale`` is
    # main pixels per lores pixel (set by the analyzer from the two frame sizes).
    min_area_px: float = 0.0
    far_scale: float = 1.0
    main_scale: float = 1.0
    # At night a cell counts only when it changed on ``persist_frames`` consecutive frames (1 to 3),
    # and a region's area is that of its track over the last ``history_frames`` frames.
    persist_frames: int = 1
    history_frames: int = 1
    # Largest background step a frame where something moves (0: no limit), luma levels.
    passing_step: float = 0.0


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What one frame showed.

    ``boxes``: motion regions in lores pixels, largest first. ``changed``: fraction of the
    unmasked cells that changed. ``global_change``: the frame was a light jump (no boxes).
    ``settling``: the detector is re-learning the background after a re-baseline (no boxes).
    """

    boxes: list[Box] = field(default_factory=list)
    changed: float = 0.0
    global_change: bool = False
    settling: bool = False

    @property
    def moving(self) -> bool:
        return bool(self.boxes)


class MotionDetector:
    """Cell-grid background subtraction with light-jump re-baselining (see module docstring)."""

    def __init__(self, lores_width: int, lores_height: int, params: MotionParams | None = None) -> None:
        self.p = params or MotionParams()
        c = self.p.cell_px
        if c < 2 or c % 2:
            raise ValueError("cell_px must be an even number >= 2")
        self.width, self.height = lores_width, lores_height
        self.gw, self.gh = lores_width // c, lores_height // c
        if self.gw < 4 or self.gh < 4:
            raise ValueError(f"lores {lores_width}x{lores_height} is too small for {c}px cells")
        h = c // 2
        # Four sample offsets per cell: the centres of its 2x2 quadrants.
        a, b = h // 2, h + h // 2
        self._offsets = [(a, a), (a, b), (b, a), (b, b)]
        self.keep = mask_cells(self.p.masks, self.gw, self.gh)
        self._n_keep = max(1, int(self.keep.sum()))
        self._all_kept = bool(self.keep.all())
        n_sub = len(range(1, self.gh, 3)) * len(range(1, self.gw, 3))  # subsample for medians
        self._mid = n_sub // 2
        self._quantiles = np.linspace(0, n_sub - 1, 65).astype(np.intp)
        self._thr = np.full((self.gh, self.gw), self.p.threshold, np.float32)
        self._dt = -1.0
        self._w = (0.0, 0.0, 0.0)
        self._ramp = np.arange(65, dtype=np.float32) * 1e-3
        p = self.p
        self._movers = Movers(self.gw, self.gh, min_cells_by_row(
            self.gw, self.gh, min_area=p.min_area, min_area_px=p.min_area_px, far_scale=p.far_scale,
            cell_main_px=p.cell_px * p.main_scale), min_area=p.min_area,
            persist_frames=p.persist_frames, history_frames=p.history_frames)
        self._bg: np.ndarray | None = None
        self._fast = np.zeros((self.gh, self.gw), np.float32)
        self._fast_stale = False
        self._night = False
        self._noise_maps = {False: np.full((self.gh, self.gw), 2.0, np.float32),
                            True: np.full((self.gh, self.gw), 2.0, np.float32)}
        self._noise = self._noise_maps[False]
        self._noise_updates = {False: 0, True: 0}
        self._settle = 0
        self._count = 0
        self._rebaseline = threading.Event()
        self.rebaselines = 0

    def rebaseline(self) -> None:
        """Forget the background at the next frame (thread-safe; e.g. on an IR switch)."""
        self._rebaseline.set()

    @property
    def night(self) -> bool:
        return self._night

    def set_night(self, night: bool) -> None:
        """Use the night (IR) sensitivity and noise map, or the day ones (analysis thread).

        Each mode keeps the noise it measured: after a switch the thresholds are right at
        once instead of re-learning the other mode's grain.
        """
        if night != self._night:
            self._night = night
            self._noise = self._noise_maps[night]
            if self._bg is not None:
                self._thresholds(self._bg[1::3, 1::3].ravel())

    def cells(self, lores: np.ndarray) -> np.ndarray:
        """The cell grid of a lores frame: mean of four samples per cell, float32."""
        c = self.p.cell_px
        ye, xe = self.gh * c, self.gw * c
        (a, b), (c1, d), (e, f), (g, h) = self._offsets
        acc = np.add(lores[a:ye:c, b:xe:c], lores[c1:ye:c, d:xe:c], dtype=np.uint16)
        acc += lores[e:ye:c, f:xe:c]
        acc += lores[g:ye:c, h:xe:c]
        out = acc.astype(np.float32)  # integer sums first: the fastest order here (≈14 µs)
        out *= 0.25
        return out

    def _rates(self, dt: float) -> tuple[float, float, float]:
        """Per-frame weights (background, still cells, fast average) for a frame interval."""
        if dt != self._dt:
            dt_ = max(dt, 1e-3)
            self._dt = dt
            self._w = (1.0 - math.exp(-dt_ / self.p.background_s), 1.0 - math.exp(-dt_ / self.p.still_s),
                       1.0 - math.exp(-dt_ / 0.3))
        return self._w

    def _thresholds(self, cs: np.ndarray) -> None:
        """Refresh the per-cell threshold: max(scaled ``threshold``, ``noise_factor`` x noise).

        ``threshold`` is meant for a normally lit scene; in a dark one (dusk, night without
        enough IR) every contrast shrinks with the light, so it is scaled down with the
        scene's median brightness (≥ 96 counts as normal), as the classic pipeline's contrast
        stretch does, but never below a quarter of it. Cost ≈5 µs, every 8th frame.
        """
        level = float(np.partition(cs, self._mid)[self._mid])
        scale = min(1.0, max(0.25, level / 96.0))
        p = self.p
        if self._night:
            thr, factor = p.night_threshold, p.night_noise_factor
        else:
            thr, factor = p.threshold, p.noise_factor
        self._thr = np.maximum(thr * scale, factor * self._noise)

    def detect(self, lores: np.ndarray, dt: float = 0.1) -> MotionResult:
        """Process one lores luma frame (``(h, w)`` uint8) taken ``dt`` s after the previous one.

        Runs on the analysis thread.
        """
        cur = self.cells(lores)
        self._count += 1
        if self._bg is None or self._rebaseline.is_set():
            self._rebaseline.clear()
            if self._bg is not None:
                self.rebaselines += 1
            self._bg = cur
            self._fast = cur.copy()
            self._settle = self.p.settle_frames
            self._movers.forget()
            self._thresholds(cur[1::3, 1::3].ravel())
            return MotionResult(settling=True)
        bg, fast = self._bg, self._fast
        if self._settle > 0:
            # Re-learning after a light jump: follow the scene fast, report nothing.
            self._settle -= 1
            bg += 0.5 * (cur - bg)
            fast[:] = bg
            return MotionResult(settling=True)
        cs, bs = cur[1::3, 1::3].ravel(), bg[1::3, 1::3].ravel()  # fixed subsample, 1 cell in 9
        ratio = cs / (bs + 1.0)
        gain = float(np.partition(ratio, self._mid)[self._mid])  # median, without np.median's overhead
        if abs(gain - 1.0) > self.p.jump_gain:
            # Half the scene or more changed brightness by this much in one frame: the light
            # switched (IR, lamp, headlights), nothing moved. A tone map cannot follow such a
            # jump exactly (cells that straddle an edge mix two tones), so re-learn instead.
            return self._jump(cur, 1.0)
        if abs(gain - 1.0) > 0.1:
            # The light changed a lot: map the background's tones onto the frame's by matching
            # quantiles (handles gain, offset, gamma and saturation alike). ≈40 µs.
            q = self._quantiles
            xp = np.sort(bs)[q] + self._ramp  # strictly increasing for np.interp
            fp = np.sort(cs)[q]
            bg[:] = np.interp(bg, xp, fp)
            fast[:] = np.interp(fast, xp, fp)
            self._thresholds(cs)
        elif abs(gain - 1.0) > 0.02:
            # Auto-exposure or a cloud: a plain gain is close enough and costs 2 µs.
            bg *= gain
            fast *= gain
        if self._count % 8 == 0:
            self._thresholds(cs)
        delta = cur - bg
        diff = np.abs(delta)
        changed = diff > self._thr
        if not self._all_kept:
            changed &= self.keep
        n = int(np.count_nonzero(changed))
        frac = n / self._n_keep
        if frac > self.p.global_fraction:
            return self._jump(cur, frac)
        # Background, fast average and noise update.
        w_bg, w_still, w_fast = self._rates(dt)
        if n:
            if self._fast_stale:
                fast[:] = bg  # nothing moved until now: the recent frames looked like the background
                self._fast_stale = False
            still = changed & (np.abs(cur - fast) < self.p.threshold)
            delta *= np.where(still, np.float32(w_still), np.float32(w_bg))
            moving = changed & ~still
            if self.p.passing_step > 0:
                # Something passing (an insect under IR is 200 levels brighter) moves the
                # background by at most this much a frame: no bright ghost trail behind it.
                step_max = self.p.passing_step
                delta[moving] = np.clip(delta[moving], -step_max, step_max)
            step = cur - fast
            step *= w_fast
            fast += step
        else:
            delta *= w_bg
            self._fast_stale = True  # only needed while something changes
        bg += delta
        if self._count % 4 == 0:
            # noise += rate * (min(diff, 30) - noise) where nothing changed, without fancy
            # indexing; rate 0.1, faster for a mode's first updates (a running mean): the
            # prior of 2 levels is replaced within a second, not ten.
            n_upd = self._noise_updates[self._night] = self._noise_updates[self._night] + 1
            upd = np.minimum(diff, 30.0)
            upd -= self._noise
            upd *= ~changed
            upd *= max(0.1, 1.0 / (n_upd + 1))
            self._noise += upd
        if n < self._movers.min_cells:
            self._movers.note(changed, self._night)  # the tracks' frame history goes on
            return MotionResult(changed=frac)
        c = self.p.cell_px
        w, h = self.width, self.height
        boxes = [(x0 * c, y0 * c, min(w, x1 * c), min(h, y1 * c))
                 for x0, y0, x1, y1 in self._movers.find(changed, self._night)]
        return MotionResult(changed=frac, boxes=boxes)

    def _jump(self, cur: np.ndarray, frac: float) -> MotionResult:
        """A light jump: this frame is the new background; the next ones only settle it."""
        self._bg = cur
        self._fast = cur.copy()
        self._settle = self.p.settle_frames
        self._movers.forget()
        self.rebaselines += 1
        return MotionResult(changed=frac, global_change=True)



def mask_cells(polygons: tuple[tuple[float, ...], ...] | list, gw: int, gh: int) -> np.ndarray:
    """Grid of cells to *keep*: False where a cell's centre lies inside any mask polygon.

    Polygons are flat lists ``[x0, y0, x1, y1, ...]`` in relative coordinates (0..1, origin
    top-left), at least three points; even-odd rule. Computed once, at construction.
    """
    keep = np.ones((gh, gw), bool)
    if not polygons:
        return keep
    cx = (np.arange(gw) + 0.5) / gw
    cy = (np.arange(gh) + 0.5) / gh
    px, py = np.meshgrid(cx, cy)
    for poly in polygons:
        pts = np.asarray(poly, np.float64).reshape(-1, 2)
        inside = np.zeros((gh, gw), bool)
        for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
            if y1 == y2:
                continue
            crosses = (y1 > py) != (y2 > py)
            xint = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (px < xint)
        keep &= ~inside
    return keep


def check_polygons(value: list) -> str | None:
    """Config validator for mask polygons (flat relative coordinate lists)."""
    for i, poly in enumerate(value):
        if len(poly) < 6 or len(poly) % 2:
            return f"mask {i}: expected at least 3 points as [x0, y0, x1, y1, x2, y2, ...]"
        if any(not 0.0 <= v <= 1.0 for v in poly):
            return f"mask {i}: coordinates are relative to the frame, 0.0 to 1.0"
    return None
