"""Detections followed over inference calls: the persistence rule that confirms them.

:class:`Persistence` turns raw detections into confirmed ones: a track (same class, boxes
overlapping) must be hit on ``min_hits`` inference calls before it counts, which suppresses
one-frame false positives (a car's red bonnet scored 0.62 "person" on three frames of
``car-detection.mp4``). A confirmed track, looked at only every few seconds, also takes a
detection within half a box of its last box (a walker who moved on), rather than letting the
same person start a new track that needs ``min_hits`` more calls.

:func:`patch` gives the lores look of a track's box, which the analyzer compares between
calls to tell a person standing still from one who walked off (see
:mod:`node.vision.schedule`).

Thread: the analysis thread (the tracks are the analyzer's); nothing is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from node.vision.boxes import Box, Crop, centre_inside, crop_box, iou


@dataclass(frozen=True, slots=True)
class Found:
    """A detection in main-frame pixels, at the frame it came from."""

    label: str
    score: float
    box: Box
    seq: int
    utc: datetime
    mono: float


def dedupe(found: list[Found], overlap: float = 0.5) -> list[Found]:
    """Drop boxes of the same label overlapping a better one (two crops saw the same person)."""
    out: list[Found] = []
    for f in sorted(found, key=lambda f: -f.score):
        if all(g.label != f.label or iou(g.box, f.box) < overlap for g in out):
            out.append(f)
    return out


@dataclass(slots=True)
class Track:
    """An object followed over inference calls (boxes in the analysed image's pixels).

    ``moved``: its appearance changed since its last hit (kept by the analyzer, see
    :func:`patch`); ``template``: the lores patch of its box at its last hit;
    ``checked``: monotonic time of the last inference call that covered it.
    """

    label: str
    box: Box
    hits: int
    misses: int
    first: Found
    last: Found
    moved: bool = False
    checked: float = 0.0
    template: np.ndarray | None = None


@dataclass
class Persistence:
    """Confirms a detection once the same object is hit on ``min_hits`` inference calls.

    A track is the same label with boxes overlapping (IoU ≥ ``match_iou``, or the centre of
    one inside the other, as a walking person's box moves between calls); a *confirmed* track
    also takes a detection that the gate missed but that overlaps its box grown by ``reach`` of
    its size on each side (see :meth:`_reach`). A track is dropped after ``max_misses`` calls
    without a hit. :meth:`update` returns the confirmed tracks' latest
    detections, each with the detection that started the track (its time is the event start).
    """

    min_hits: int = 3
    max_misses: int = 2
    match_iou: float = 0.2
    reach: float = 0.5
    tracks: list[Track] = field(default_factory=list)

    def confirmed(self, t: Track) -> bool:
        return t.hits >= self.min_hits

    def update(self, found: list[Found], covered: list[Crop] | None = None,
               mono: float = 0.0) -> list[tuple[Found, Found]]:
        """Feed one inference call's detections; return ``(first, latest)`` per confirmed track.

        ``covered``: the crops that were examined; a track outside all of them was not looked
        at and is not charged a miss (``None``: everything was examined).
        """
        matched: set[int] = set()
        out = []
        for f in sorted(found, key=lambda f: -f.score):
            best_i, best_v = -1, -1.0
            for i, t in enumerate(self.tracks):
                if i in matched or t.label != f.label:
                    continue
                v = iou(t.box, f.box)
                if (v >= self.match_iou or centre_inside(t.box, f.box)) and v > best_v:
                    best_i, best_v = i, v
            jumped = False
            if best_i < 0:
                best_i = self._reach(f, matched)
                jumped = best_i >= 0
            if best_i >= 0:
                t = self.tracks[best_i]
                # A track that jumped is on the move: its new box is no still reference look.
                t.box, t.hits, t.misses, t.last, t.moved = f.box, t.hits + 1, 0, f, jumped
            else:
                self.tracks.append(Track(f.label, f.box, 1, 0, f, f, checked=mono))
                best_i = len(self.tracks) - 1
            matched.add(best_i)
            t = self.tracks[best_i]
            if t.hits >= self.min_hits:
                out.append((t.first, f))
        for i, t in enumerate(self.tracks):
            if covered is None or any(centre_inside(crop_box(c), t.box) for c in covered):
                t.checked = mono
                if i not in matched:
                    t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_misses]
        return out

    def _reach(self, f: Found, matched: set[int]) -> int:
        """The confirmed track a detection the usual gate missed belongs to, or -1.

        A confirmed track is looked at only every few seconds (``[detect] track_s``), in which a
        walker moves farther than the IoU/centre gate allows; a detection of its label overlapping
        its box grown by ``reach`` of the box's size on each side is the same object (the nearest
        such track), marked *moved* (re-checked every ``track_s``, never held as still). Without
        this the person would start a new track, need ``min_hits`` more calls to be confirmed
        again, and leave the old track to be missed twice before it is dropped.
        """
        best_i, best_d = -1, float("inf")
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        for i, t in enumerate(self.tracks):
            if i in matched or t.label != f.label or not self.confirmed(t):
                continue
            dx, dy = (t.box[2] - t.box[0]) * self.reach, (t.box[3] - t.box[1]) * self.reach
            if not (f.box[0] < t.box[2] + dx and t.box[0] - dx < f.box[2]
                    and f.box[1] < t.box[3] + dy and t.box[1] - dy < f.box[3]):
                continue
            d = abs(cx - (t.box[0] + t.box[2]) / 2) + abs(cy - (t.box[1] + t.box[3]) / 2)
            if d < best_d:
                best_i, best_d = i, d
        return best_i

    def clear(self) -> None:
        self.tracks.clear()


def patch(lores: np.ndarray, box: Box, n: int = 16) -> np.ndarray:
    """An ``n`` x ``n`` sample of ``box`` (lores pixels) with its mean removed (float32).

    Comparing two patches (mean absolute difference, in luma levels) tells whether what is in
    the box still looks the same — a person standing still — without running the model, and
    without being fooled by a uniform light change. Cost: ≈10 µs.
    """
    h, w = lores.shape
    x0, y0 = min(max(0, box[0]), w - 1), min(max(0, box[1]), h - 1)
    x1, y1 = max(x0 + 1, min(w, box[2])), max(y0 + 1, min(h, box[3]))
    xs = (x0 + (np.arange(n) + 0.5) * ((x1 - x0) / n)).astype(np.intp)
    ys = (y0 + (np.arange(n) + 0.5) * ((y1 - y0) / n)).astype(np.intp)
    p = lores[ys[:, None], xs[None, :]].astype(np.float32)
    return p - p.mean()
