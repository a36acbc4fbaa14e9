"""Box maths of the vision path: pixel boxes, crops, and the few tests on them.

A :data:`Box` is ``(x0, y0, x1, y1)`` in pixels, x1/y1 exclusive, in whatever image it was
found on (lores for motion regions, main for crops and detections: :func:`scale_box` moves
between them). A :class:`Crop` is the region of the main frame given to the model.
A relative box (0..1, as events carry it) is :data:`node.events.RelBox`.

Thread: any (pure functions, frozen values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from node.events import RelBox

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


def crop_box(c: Crop) -> Box:
    """The pixel box a crop covers."""
    return (c.x, c.y, c.x + c.w, c.y + c.h)


def overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(a: Box, b: Box) -> bool:
    """``a`` lies wholly inside ``b``."""
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]


def centre_inside(a: Box, b: Box) -> bool:
    """The centre of ``b`` lies inside ``a``."""
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return a[0] <= cx <= a[2] and a[1] <= cy <= a[3]


def grow(b: Box, f: float) -> Box:
    """``b`` widened by ``f`` of its size on each side."""
    dx, dy = int((b[2] - b[0]) * f), int((b[3] - b[1]) * f)
    return (b[0] - dx, b[1] - dy, b[2] + dx, b[3] + dy)


def rel(b: Box, w: int, h: int) -> RelBox:
    """A pixel box of a ``w`` x ``h`` image as a relative box, clipped to the image."""
    return (max(0.0, b[0] / w), max(0.0, b[1] / h), min(1.0, b[2] / w), min(1.0, b[3] / h))


def rel_union(boxes: list[Box], w: int, h: int) -> RelBox | None:
    """The relative box around all ``boxes``, or None when there are none."""
    if not boxes:
        return None
    return rel((min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes)), w, h)
