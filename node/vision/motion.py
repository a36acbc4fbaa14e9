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
4. **Regions.** Changed cells are pooled into blocks of 4x4 cells (16 px on a 320 px lores
   frame; pooling joins the limbs of one person) and the blocks are grouped into 8-connected
   regions by a run-length labelling in Python (cost grows with the number of runs, hence
   the pooling); a region counts when it holds at least ``min_area`` (fraction of the frame)
   of changed cells, or ``min_area_px`` main-image pixels shrinking towards the top of the
   frame (far = small). Masked cells (config polygons in relative coordinates) never count.
   **Along tracks** (``history_frames`` > 1): at night a cell counts only when it changed on
   ``persist_frames`` consecutive frames (rain streaks, grain and darting insects do not
   stay), and a region smaller than ``min_area`` counts when its cells over the last
   ``history_frames`` reach the row's minimum and link from frame to frame (see
   :meth:`MotionDetector._counts`): a small, dim mover adds up along its path.
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

import itertools
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from node.vision.boxes import Box  # here in lores pixels


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
        self._min_row = min_cells_by_row(self.p, self.gw, self.gh)
        self._min_cells = int(self._min_row.min())
        self._strong = max(1, round(self.p.min_area * self.gw * self.gh))
        self._bg: np.ndarray | None = None
        self._fast = np.zeros((self.gh, self.gw), np.float32)
        self._fast_stale = False
        self._night = False
        self._noise_maps = {False: np.full((self.gh, self.gw), 2.0, np.float32),
                            True: np.full((self.gh, self.gw), 2.0, np.float32)}
        self._noise = self._noise_maps[False]
        self._noise_updates = {False: 0, True: 0}
        self._prev = np.zeros((self.gh, self.gw), bool)
        self._prev2 = self._prev.copy()
        self._hist = np.zeros((max(1, self.p.history_frames), self.gh, self.gw), bool)  # live cells, a ring
        self._head = 0
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
            self._forget_tracks()
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
        live, track = self._along_tracks(changed)
        if n < self._min_cells or (live is not changed and not live.any()):
            return MotionResult(changed=frac)
        # Label on a grid of 4x4-cell blocks (any changed cell marks its block; 16 px on a
        # 320 px lores frame): few runs for the Python labelling, and pooling joins the limbs
        # of one person. A region's area is the count of its changed cells (of its track's
        # cells over the last ``history_frames``); it must hold a cell changed now.
        b = 4
        bh, bw = self.gh // b, self.gw // b
        core = track[: bh * b, : bw * b]
        if track is live:
            half = core[0::2] | core[1::2]  # 2x2 pooling twice with slices: ≈4 µs (reshape.any: ≈15)
            half = half[:, 0::2] | half[:, 1::2]
            pooled = half[0::2] | half[1::2]
            pooled = pooled[:, 0::2] | pooled[:, 1::2]
        else:
            # Tracks: a block needs two of its cells, so the odd cell that stayed changed
            # by coincidence (rain, grain) does not bridge blocks into a region. ≈15 µs.
            pooled = core.reshape(bh, b, bw, b).sum(axis=(1, 3), dtype=np.int16) >= 2
        c = self.p.cell_px
        w, h = self.width, self.height
        boxes = []
        for x0, y0, x1, y1 in regions(pooled, 1):
            cx0, cy0, cx1, cy1 = x0 * b, y0 * b, x1 * b, y1 * b
            if x1 == bw:
                cx1 = self.gw  # the leftover cells at the right/bottom edge join the last block
            if y1 == bh:
                cy1 = self.gh
            if self._counts(live, track, cx0, cy0, cx1, cy1):
                boxes.append((cx0 * c, cy0 * c, min(w, cx1 * c), min(h, cy1 * c)))
        return MotionResult(changed=frac, boxes=boxes)

    def _counts(self, live: np.ndarray, track: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> bool:
        """Whether the region (cell box) is motion.

        Without tracks: its changed cells reach the minimum area for its row. With tracks, a
        region large now (``min_area`` of the frame, the classic test) counts at once; a
        smaller one must reach the minimum for its row with its track's cells *and* its live
        cells must be linked from frame to frame (touching the previous frame's): a small
        mover is there frame after frame, next to where it was; a coincidence of rain
        streaks or grain is somewhere else every time. Cost: ≈10 µs a region.
        """
        need = self._min_row[y1 - 1]
        if track is live:
            return np.count_nonzero(live[y0:y1, x0:x1]) >= need
        now = np.count_nonzero(live[y0:y1, x0:x1])
        if not now:
            return False
        if now >= max(need, self._strong):
            return True
        if np.count_nonzero(track[y0:y1, x0:x1]) < need:
            return False
        # Frame to frame, newest first: the region's live cells must touch (within a cell)
        # the previous frame's, now and on at least half of the track's steps.
        n = self.p.history_frames
        frames = self._hist[:, y0:y1, x0:x1]
        order = [(self._head - k) % n for k in range(n)]
        links = [bool((_dilate(frames[a]) & frames[b]).any()) for a, b in itertools.pairwise(order)]
        return links[0] and sum(links) >= n // 2

    def _along_tracks(self, changed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(live, track)``: the cells that count now, and the cells of their tracks.

        ``live``: changed on this frame and, at night, on the ``persist_frames`` - 1 before it. A
        mover's body overlaps itself from frame to frame; grain, rain streaks and an insect
        darting in front of the lens (somewhere else on every frame) do not. ``track``: cells
        live on any of the last ``history_frames`` frames, so a small or dim mover's area is
        that of its path (regions merged along the track), not one frame's few cells.
        Cost: ≈10 µs on 80x45 cells.
        """
        p = self.p
        live = changed
        if p.persist_frames > 1 and self._night:
            live = changed & self._prev
            if p.persist_frames > 2:
                live &= self._prev2
                self._prev2 = self._prev
            self._prev = changed
        if p.history_frames <= 1:
            return live, live
        self._head = (self._head + 1) % p.history_frames
        self._hist[self._head] = live
        return live, self._hist.any(axis=0)

    def _jump(self, cur: np.ndarray, frac: float) -> MotionResult:
        """A light jump: this frame is the new background; the next ones only settle it."""
        self._bg = cur
        self._fast = cur.copy()
        self._settle = self.p.settle_frames
        self._forget_tracks()
        self.rebaselines += 1
        return MotionResult(changed=frac, global_change=True)

    def _forget_tracks(self) -> None:
        self._prev[:] = False
        self._prev2[:] = False
        self._hist[:] = False


def _dilate(a: np.ndarray) -> np.ndarray:
    """3x3 binary dilation of a small boolean array (slices, no scipy)."""
    d = a.copy()
    d[1:] |= a[:-1]
    d[:-1] |= a[1:]
    e = d.copy()
    e[:, 1:] |= d[:, :-1]
    e[:, :-1] |= d[:, 1:]
    return e


def min_cells_by_row(p: MotionParams, gw: int, gh: int) -> np.ndarray:
    """Smallest region (changed cells) for a region whose bottom is on each cell row.

    ``min_area_px`` (main-image pixels) at the bottom row, ``far_scale`` of it at the top,
    linear in between (a flat street seen from a pole: far = high in the picture = small);
    without ``min_area_px``, ``min_area`` of the frame everywhere. Never under 2 cells (one
    cell is grain).
    """
    if p.min_area_px > 0:
        cell_main = (p.cell_px * p.main_scale) ** 2
        base = p.min_area_px / cell_main
        rows = (np.arange(gh) + 1) / gh
        need = base * (p.far_scale + (1.0 - p.far_scale) * rows)
        return np.maximum(2.0, np.round(need))
    return np.full(gh, max(1, round(p.min_area * gw * gh)), np.float64)


def regions(mask: np.ndarray, min_cells: int) -> list[Box]:
    """Connected regions (8-connected runs) of a boolean grid, as cell boxes, largest first.

    Run-length labelling: runs of each row are found with numpy, then joined to overlapping
    runs of the row above with a union-find. Cost grows with the number of runs, not cells.
    """
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    rows_l, starts_l, ends_l = rows.tolist(), starts.tolist(), ends.tolist()
    prev: list[int] = []
    cur: list[int] = []
    row = -1
    for i, r in enumerate(rows_l):
        if r != row:
            prev = cur if r == row + 1 else []
            cur, row = [], r
        s, e = starts_l[i], ends_l[i]
        for j in prev:
            # 8-connectivity: runs touch if they overlap when widened by one cell.
            if starts_l[j] <= e and s <= ends_l[j]:
                a, b = find(i), find(j)
                if a != b:
                    parent[a] = b
        cur.append(i)
    acc: dict[int, list[int]] = {}
    for i in range(len(rows_l)):
        root = find(i)
        r, s, e = rows_l[i], starts_l[i], ends_l[i]
        box = acc.get(root)
        if box is None:
            acc[root] = [s, r, e, r + 1, e - s]
        else:
            box[0], box[1] = min(box[0], s), min(box[1], r)
            box[2], box[3] = max(box[2], e), max(box[3], r + 1)
            box[4] += e - s
    out = [b for b in acc.values() if b[4] >= min_cells]
    out.sort(key=lambda b: -b[4])
    return [(b[0], b[1], b[2], b[3]) for b in out]


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
