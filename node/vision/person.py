"""Object (person) detection on crops around motion, and the persistence rule.

The model sees square crops of the *main* frame (colour), chosen from the motion regions
found on the lores luma frame:

1. motion boxes (lores pixels) are scaled to main pixels and merged while they lie closer
   than ``merge_gap`` of the frame's short side;
2. each group becomes a square around its box, at least ``min_crop`` of the short side (a
   person far away is upscaled, never cut) and widened by a margin; a square larger than
   ``whole_frame_above`` of the short side means "large motion": the whole frame is used
   (stretched to the model input, as the SSD was trained);
3. the crop is sampled at the model input size straight from the yuv420p planes and only
   those samples are converted to RGB (BT.601 limited range, lookup tables): ≈0.8 ms for
   300x300 in numpy, independent of the main resolution.

Why colour and not luma replicated to 3 channels: measured on ``one-by-one-person-detection.mp4``
(whole frames, person class, score ≥ 0.5), luma-only input loses recall against RGB (see
``docs/vision.md`` for the figures), and the colour crop costs about the same, because only
the sampled pixels are converted.

:class:`Persistence` turns raw detections into confirmed ones: a track (same class, boxes
overlapping) must be hit on ``min_hits`` inference calls before it counts, which suppresses
one-frame false positives (a car's red bonnet scored 0.62 "person" on three frames of
``car-detection.mp4``). A confirmed track, looked at only every few seconds, also takes a
detection within half a box of its last box (a walker who moved on), rather than letting the
same person start a new track that needs ``min_hits`` more calls.

Thread: everything here runs on the inference side (one thread); nothing is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

#: A box in pixels, ``(x0, y0, x1, y1)``, x1/y1 exclusive.
Box = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Crop:
    """A region of the main frame given to the model: ``x, y`` top-left, ``w, h`` in pixels."""

    x: int
    y: int
    w: int
    h: int


def scale_box(box: Box, sx: float, sy: float) -> Box:
    """Scale a pixel box from one image size to another."""
    x0, y0, x1, y1 = box
    return (int(x0 * sx), int(y0 * sy), int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy)))


def merge_boxes(boxes: list[Box], gap: int) -> list[Box]:
    """Union boxes that overlap or lie within ``gap`` pixels of each other (repeat until stable).

    Cost: O(n²) per pass on a handful of motion boxes.
    """
    out = [list(b) for b in boxes]
    changed = True
    while changed and len(out) > 1:
        changed = False
        i = 0
        while i < len(out):
            j = i + 1
            while j < len(out):
                a, b = out[i], out[j]
                if a[0] - gap <= b[2] and b[0] - gap <= a[2] and a[1] - gap <= b[3] and b[1] - gap <= a[3]:
                    out[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del out[j]
                    changed = True
                else:
                    j += 1
            i += 1
    return [tuple(b) for b in out]  # type: ignore[misc]


def plan_crops(boxes: list[Box], width: int, height: int, *, min_crop: float = 0.35,
               margin: float = 0.25, merge_gap: float = 0.08, whole_frame_above: float = 0.8,
               max_crops: int = 2, tiles_for_small: float = 0.0) -> list[Crop]:
    """Square crops (main pixels) covering ``boxes`` (main pixels); see the module docstring.

    More groups than ``max_crops`` fall back to the whole frame (one call instead of many),
    or, when every group is smaller than ``tiles_for_small`` of the short side, to the
    tiles of :func:`plan_tiles` that hold them (up to four calls).
    """
    if not boxes:
        return []
    short = min(width, height)
    groups = merge_boxes(boxes, int(merge_gap * short))
    whole = Crop(0, 0, width, height)
    if len(groups) > max_crops:
        if tiles_for_small and max(max(b[2] - b[0], b[3] - b[1]) for b in groups) < tiles_for_small * short:
            # Many small regions: the tiles holding them (each twice the scale of the whole
            # frame), rather than the whole frame where small people vanish.
            tiles = [t for t in plan_tiles(width, height, whole=False)
                     if any(_centre_inside((t.x, t.y, t.x + t.w, t.y + t.h), g) for g in groups)]
            return tiles
        return [whole]
    crops = []
    for x0, y0, x1, y1 in groups:
        side = int(max(x1 - x0, y1 - y0) * (1.0 + 2 * margin))
        side = max(side, int(min_crop * short))
        if side > whole_frame_above * short:
            return [whole]
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        x = min(max(0, cx - side // 2), width - side)
        y = min(max(0, cy - side // 2), height - side)
        crops.append(Crop(x, y, side, side))
    return crops


def plan_tiles(width: int, height: int, overlap: float = 0.25, whole: bool = True) -> list[Crop]:
    """The whole frame and 2x2 tiles overlapping by ``overlap`` of a tile: the tiling plan.

    Used when motion cannot tell where to look (right after a re-baseline: someone already
    standing in the scene is part of the new background) and when motion regions are too
    many for crops: a tile shows a small, far person twice as large as the whole frame does
    (on ``night-person-walking.avi`` the person is found on 94 % of the frames with tiles,
    41 % on the whole frame). Costs five model calls (four without ``whole``).
    """
    tw, th = int(width / (2 - overlap)), int(height / (2 - overlap))
    tiles = [Crop(x, y, tw, th) for y in (0, height - th) for x in (0, width - tw)]
    return ([Crop(0, 0, width, height)] if whole else []) + tiles


# BT.601 limited range, as lookup tables (int16): R = Y' + Rv, G = Y' + Gu + Gv, B = Y' + Bu.
_I = np.arange(256, dtype=np.float32)
_Y = np.round(1.164 * (_I - 16)).astype(np.int16)
_RV = np.round(1.596 * (_I - 128)).astype(np.int16)
_GU = np.round(-0.392 * (_I - 128)).astype(np.int16)
_GV = np.round(-0.813 * (_I - 128)).astype(np.int16)
_BU = np.round(2.017 * (_I - 128)).astype(np.int16)


def _sample_grid(crop: Crop, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre sample positions (rows, columns) of ``crop`` at ``size``."""
    ow, oh = size
    xs = crop.x + ((np.arange(ow) + 0.5) * (crop.w / ow)).astype(np.intp)
    ys = crop.y + ((np.arange(oh) + 0.5) * (crop.h / oh)).astype(np.intp)
    return ys, xs


def crop_rgb(main: np.ndarray, width: int, height: int, crop: Crop, size: tuple[int, int],
             smooth: bool = True) -> np.ndarray:
    """Sample ``crop`` of a yuv420p frame (PyAV layout) at ``size`` and convert only that to RGB.

    A crop at least as large as ``size`` is sampled nearest-neighbour at pixel centres (``take``
    along each axis: 3x faster than a 2-D fancy index). A smaller crop (a small, far person,
    enlarged for the model) is interpolated bilinearly when ``smooth``: nearest-neighbour
    enlargement turns a 17x49 px person into blocks the SSD does not recognise (measured on
    ``night-person-walking.avi``, an 84 px crop around the person: person ≥ 0.5 on 0/63 frames
    nearest-neighbour, 63/63 bilinear). BT.601 limited range (as H.264 cameras deliver)
    through int16 lookup tables. Cost: ≈0.8 ms for 300x300 here (≈2 ms bilinear), whatever the
    main resolution.
    """
    ow, oh = size
    planes = main[height:].reshape(2, height // 2, width // 2)
    if smooth and (crop.w < ow or crop.h < oh):
        y = _bilinear(main[:height], crop.x, crop.y, crop.w, crop.h, size)
        u = _bilinear(planes[0], crop.x / 2, crop.y / 2, crop.w / 2, crop.h / 2, size)
        v = _bilinear(planes[1], crop.x / 2, crop.y / 2, crop.w / 2, crop.h / 2, size)
    else:
        ys, xs = _sample_grid(crop, size)
        y = main[:height].take(ys, axis=0).take(xs, axis=1)
        ys2, xs2 = ys >> 1, xs >> 1
        u = planes[0].take(ys2, axis=0).take(xs2, axis=1)
        v = planes[1].take(ys2, axis=0).take(xs2, axis=1)
    yy = _Y.take(y)
    out = np.empty((oh, ow, 3), np.uint8)
    t = yy + _RV.take(v)
    out[..., 0] = np.clip(t, 0, 255, out=t)
    t = yy + _GU.take(u)
    t += _GV.take(v)
    out[..., 1] = np.clip(t, 0, 255, out=t)
    t = yy + _BU.take(u)
    out[..., 2] = np.clip(t, 0, 255, out=t)
    return out


def _bilinear(plane: np.ndarray, x: float, y: float, w: float, h: float, size: tuple[int, int]) -> np.ndarray:
    """Region ``x, y, w, h`` (pixels, may be fractional) of ``plane`` resampled bilinearly at
    ``size`` (pixel-centre aligned, edges clamped); uint8. Rows first, then columns."""
    ow, oh = size
    ph, pw = plane.shape
    xs = x + (np.arange(ow, dtype=np.float32) + 0.5) * (w / ow) - 0.5
    ys = y + (np.arange(oh, dtype=np.float32) + 0.5) * (h / oh) - 0.5
    np.clip(xs, 0, pw - 1, out=xs)
    np.clip(ys, 0, ph - 1, out=ys)
    x0, y0 = xs.astype(np.intp), ys.astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, pw - 1), np.minimum(y0 + 1, ph - 1)
    fx, fy = xs - x0, (ys - y0)[:, None]
    lo, hi = int(x0[0]), int(x1[-1]) + 1  # only the columns the crop needs
    top = plane[:, lo:hi].take(y0, axis=0).astype(np.float32)
    rows = top + (plane[:, lo:hi].take(y1, axis=0) - top) * fy
    left = rows.take(x0 - lo, axis=1)
    out = left + (rows.take(x1 - lo, axis=1) - left) * fx
    return (out + 0.5).astype(np.uint8)


def crop_luma3(image: np.ndarray, crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """The same crop of a luma plane (or of the Y rows of a yuv420p frame), replicated to 3
    channels: the model input when a source delivers no colour (lores only)."""
    ys, xs = _sample_grid(crop, size)
    y = image.take(ys, axis=0).take(xs, axis=1)
    return np.repeat(y[:, :, None], 3, axis=2)


@dataclass(frozen=True, slots=True)
class Found:
    """A detection in main-frame pixels, at the frame it came from."""

    label: str
    score: float
    box: Box
    seq: int
    utc: datetime
    mono: float


def to_frame(det_box: tuple[float, float, float, float], crop: Crop) -> Box:
    """Map a model box (relative to the crop) to main-frame pixels."""
    x0, y0, x1, y1 = det_box
    return (crop.x + int(x0 * crop.w), crop.y + int(y0 * crop.h),
            crop.x + int(x1 * crop.w), crop.y + int(y1 * crop.h))


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


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

    ``moved``: its appearance changed since its last hit (kept by the pipeline, see
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
                if (v >= self.match_iou or _centre_inside(t.box, f.box)) and v > best_v:
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
            if covered is None or any(_centre_inside(_crop_box(c), t.box) for c in covered):
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


def _crop_box(c: Crop) -> Box:
    return (c.x, c.y, c.x + c.w, c.y + c.h)


def _centre_inside(a: Box, b: Box) -> bool:
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return a[0] <= cx <= a[2] and a[1] <= cy <= a[3]
