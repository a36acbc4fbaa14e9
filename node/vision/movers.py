"""From changed cells to the regions that count as movers: labelling, minimum areas, tracks.

:class:`Movers` is the last step of :class:`node.vision.motion.MotionDetector` on each frame.
Changed cells are pooled into blocks of 4x4 cells (16 px on a 320 px lores frame; pooling
joins the limbs of one person) and the blocks are grouped into 8-connected regions by a
run-length labelling in Python (:func:`regions`; cost grows with the number of runs, hence the
pooling). A region counts when it holds the minimum area for the row its bottom is on
(:func:`min_cells_by_row`: ``min_area`` of the frame, or ``min_area_px`` main-image pixels
shrinking towards the top, far = small).

**Along tracks** (``history_frames`` > 1, issue 14): at night a cell counts only when it
changed on ``persist_frames`` consecutive frames — a mover's body overlaps itself from frame
to frame; grain, rain streaks and an insect darting in front of the lens (somewhere else on
every frame) do not. A region as large as ``min_area`` counts at once; a smaller one counts
when the cells of its track over the last ``history_frames`` frames reach its row's minimum
and its live cells link from frame to frame (each frame's touching the previous one's): a
far, dim walker adds up along its path, coincidences of rain streaks do not.

Cost: ≈10-40 µs per frame with motion (pooling, labelling, the tests per region).
Thread: the analysis thread (inside ``MotionDetector.detect``).
"""

from __future__ import annotations

import itertools

import numpy as np

#: A box in grid cells (or blocks), ``(x0, y0, x1, y1)``, x1/y1 exclusive.
CellBox = tuple[int, int, int, int]

#: Side of the pooling blocks, in cells.
BLOCK = 4


class Movers:
    """The motion regions of each frame's changed cells (see the module docstring).

    ``min_row``: minimum area (cells) for a region whose bottom is on each row;
    ``min_area``: the fraction of the frame that counts at once.
    """

    def __init__(self, gw: int, gh: int, min_row: np.ndarray, *, min_area: float,
                 persist_frames: int = 1, history_frames: int = 1) -> None:
        self.gw, self.gh = gw, gh
        self.min_row = min_row
        self.min_cells = int(min_row.min())
        self.strong = max(1, round(min_area * gw * gh))
        self.persist_frames, self.history_frames = persist_frames, history_frames
        self._prev = np.zeros((gh, gw), bool)
        self._prev2 = self._prev.copy()
        self._hist = np.zeros((max(1, history_frames), gh, gw), bool)  # live cells, a ring
        self._head = 0

    def forget(self) -> None:
        """Drop the tracks (the background was re-learnt)."""
        self._prev[:] = False
        self._prev2[:] = False
        self._hist[:] = False

    def note(self, changed: np.ndarray, night: bool) -> None:
        """Record a frame with too little change to hold a region (the tracks go on)."""
        self._along_tracks(changed, night)

    def find(self, changed: np.ndarray, night: bool) -> list[CellBox]:
        """Regions (cell boxes) of this frame's ``changed`` cells that count as movers."""
        live, track = self._along_tracks(changed, night)
        if live is not changed and not live.any():
            return []
        # Label on a grid of blocks. A region's area is the count of its changed cells (of
        # its track's cells over the last ``history_frames``); it must hold a cell live now.
        b = BLOCK
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
        out = []
        for x0, y0, x1, y1 in regions(pooled, 1):
            cx0, cy0, cx1, cy1 = x0 * b, y0 * b, x1 * b, y1 * b
            if x1 == bw:
                cx1 = self.gw  # the leftover cells at the right/bottom edge join the last block
            if y1 == bh:
                cy1 = self.gh
            if self._counts(live, track, cx0, cy0, cx1, cy1):
                out.append((cx0, cy0, cx1, cy1))
        return out

    def _counts(self, live: np.ndarray, track: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> bool:
        """Whether the region (cell box) is motion.

        Without tracks: its changed cells reach the minimum area for its row. With tracks, a
        region large now (``min_area`` of the frame, the classic test) counts at once; a
        smaller one must reach the minimum for its row with its track's cells *and* its live
        cells must be linked from frame to frame (touching the previous frame's): a small
        mover is there frame after frame, next to where it was; a coincidence of rain
        streaks or grain is somewhere else every time. Cost: ≈10 µs a region.
        """
        need = self.min_row[y1 - 1]
        if track is live:
            return np.count_nonzero(live[y0:y1, x0:x1]) >= need
        now = np.count_nonzero(live[y0:y1, x0:x1])
        if not now:
            return False
        if now >= max(need, self.strong):
            return True
        if np.count_nonzero(track[y0:y1, x0:x1]) < need:
            return False
        # Frame to frame, newest first: the region's live cells must touch (within a cell)
        # the previous frame's, now and on at least half of the track's steps.
        n = self.history_frames
        frames = self._hist[:, y0:y1, x0:x1]
        order = [(self._head - k) % n for k in range(n)]
        links = [bool((_dilate(frames[a]) & frames[b]).any()) for a, b in itertools.pairwise(order)]
        return links[0] and sum(links) >= n // 2

    def _along_tracks(self, changed: np.ndarray, night: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(live, track)``: the cells that count now, and the cells of their tracks.

        ``live``: changed on this frame and, at night, on the ``persist_frames`` - 1 before it. A
        mover's body overlaps itself from frame to frame; grain, rain streaks and an insect
        darting in front of the lens (somewhere else on every frame) do not. ``track``: cells
        live on any of the last ``history_frames`` frames, so a small or dim mover's area is
        that of its path (regions merged along the track), not one frame's few cells.
        Cost: ≈10 µs on 80x45 cells.
        """
        live = changed
        if self.persist_frames > 1 and night:
            live = changed & self._prev
            if self.persist_frames > 2:
                live &= self._prev2
                self._prev2 = self._prev
            self._prev = changed
        if self.history_frames <= 1:
            return live, live
        self._head = (self._head + 1) % self.history_frames
        self._hist[self._head] = live
        return live, self._hist.any(axis=0)


def _dilate(a: np.ndarray) -> np.ndarray:
    """3x3 binary dilation of a small boolean array (slices, no scipy)."""
    d = a.copy()
    d[1:] |= a[:-1]
    d[:-1] |= a[1:]
    e = d.copy()
    e[:, 1:] |= d[:, :-1]
    e[:, :-1] |= d[:, 1:]
    return e


def min_cells_by_row(gw: int, gh: int, *, min_area: float, min_area_px: float = 0.0,
                     far_scale: float = 1.0, cell_main_px: float = 4.0) -> np.ndarray:
    """Smallest region (changed cells) for a region whose bottom is on each cell row.

    ``min_area_px`` (main-image pixels; a cell is ``cell_main_px`` main pixels a side) at the
    bottom row, ``far_scale`` of it at the top, linear in between (a flat street seen from a
    pole: far = high in the picture = small); without ``min_area_px``, ``min_area`` of the
    frame everywhere. Never under 2 cells (one cell is grain).
    """
    if min_area_px > 0:
        base = min_area_px / cell_main_px**2
        rows = (np.arange(gh) + 1) / gh
        need = base * (far_scale + (1.0 - far_scale) * rows)
        return np.maximum(2.0, np.round(need))
    return np.full(gh, max(1, round(min_area * gw * gh)), np.float64)


def regions(mask: np.ndarray, min_cells: int) -> list[CellBox]:
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
