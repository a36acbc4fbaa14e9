"""Appearance attributes of an object event, for the station's search and trace.

* **Named dominant colours** from the event's best frame (the snapshot's): for a person the
  upper body (15–50 % of the box height) and the lower body (55–90 %), for a vehicle the body
  (the box's central part). The crop is sampled on a grid of at most ``SAMPLES`` points from the
  yuv420p frame, converted to RGB and HSV, each sample named (black, white, grey, red,
  orange, yellow, brown, green, blue, purple, pink) and the most frequent name wins. Luma-only
  frames have no colour: nothing is said then.
* **Entry and exit side**: the frame edge nearest the first and the last box of the event
  (``left``, ``right``, ``top``, ``bottom``), or ``inside`` when the box is clear of every edge
  (appeared from behind something, or still there).

The event payload gets ``"appearance": {"colours": {"upper": .., "lower": ..} | {"body": ..},
"entry": .., "exit": ..}`` (``exit`` from the ``end`` message on). ``docs/mqtt.md`` describes it.

Cost: ≈0.1–0.3 ms per snapshot frame here (``bench/bench_appearance.py``), on the analysis
thread, once or twice per object event. Thread: the analysis thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from node.events import RelBox

COLOUR_NAMES = ("black", "white", "grey", "red", "orange", "yellow", "brown", "green", "blue", "purple",
                "pink")
PERSON = "person"
VEHICLES = ("car", "motorcycle", "bicycle", "bus", "truck")
#: most sample points per region (a 24 x 32 grid)
SAMPLES = 768
#: a box within this fraction of the frame from an edge touches it
EDGE = 0.06


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV samples → RGB floats in 0..1 (shape (..., 3))."""
    yf = (y.astype(np.float32) - 16.0) * (255.0 / 219.0)
    uf, vf = u.astype(np.float32) - 128.0, v.astype(np.float32) - 128.0
    r = yf + 1.596 * vf
    g = yf - 0.392 * uf - 0.813 * vf
    b = yf + 2.017 * uf
    return np.clip(np.stack([r, g, b], axis=-1) / 255.0, 0.0, 1.0)


def colour_indices(rgb: np.ndarray) -> np.ndarray:
    """Index into :data:`COLOUR_NAMES` for every RGB sample (shape (n, 3) → (n,))."""
    mx, mn = rgb.max(axis=1), rgb.min(axis=1)
    d = mx - mn
    s = np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    safe = np.maximum(d, 1e-6)
    h = np.where(mx == r, ((g - b) / safe) % 6,
                 np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    out = np.full(len(rgb), COLOUR_NAMES.index("grey"), np.int64)
    chroma = (s >= 0.25) & (mx >= 0.2)
    hue = np.select(
        [(h < 15) | (h >= 340), h < 40, h < 70, h < 165, h < 255, h < 290],
        [3, 4, 5, 7, 8, 9], default=10)  # red, orange, yellow, green, blue, purple; else pink
    brown = chroma & ((hue == 4) | (hue == 5)) & (mx < 0.6)  # dark orange/yellow
    out = np.where(chroma, hue, out)
    out = np.where(brown, COLOUR_NAMES.index("brown"), out)
    out = np.where(~chroma & (mx < 0.22), COLOUR_NAMES.index("black"), out)
    out = np.where(~chroma & (mx >= 0.22) & (s < 0.25) & (mn > 0.72), COLOUR_NAMES.index("white"), out)
    return out


def dominant_colour(yuv: np.ndarray, width: int, height: int, region: RelBox) -> str | None:
    """The most frequent colour name in ``region`` (relative) of a yuv420p frame."""
    x0, y0 = int(region[0] * width) & ~1, int(region[1] * height) & ~1
    x1, y1 = min(width, int(region[2] * width)), min(height, int(region[3] * height))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    rows = max(1, int(np.sqrt(SAMPLES * (y1 - y0) / max(1, x1 - x0))))
    cols = max(1, SAMPLES // rows)
    ys = np.linspace(y0, y1 - 1, min(rows, y1 - y0)).astype(np.int64)
    xs = np.linspace(x0, x1 - 1, min(cols, x1 - x0)).astype(np.int64)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    luma = yuv[:height][yy, xx]
    cw, ch = width // 2, height // 2
    chroma = yuv[height:].reshape(2, ch, cw)
    cy, cx = np.minimum(yy // 2, ch - 1), np.minimum(xx // 2, cw - 1)
    rgb = yuv_to_rgb(luma, chroma[0][cy, cx], chroma[1][cy, cx]).reshape(-1, 3)
    counts = np.bincount(colour_indices(rgb), minlength=len(COLOUR_NAMES))
    return COLOUR_NAMES[int(counts.argmax())]


def _sub(box: RelBox, fx0: float, fy0: float, fx1: float, fy1: float) -> RelBox:
    w, h = box[2] - box[0], box[3] - box[1]
    return (box[0] + fx0 * w, box[1] + fy0 * h, box[0] + fx1 * w, box[1] + fy1 * h)


def colours(yuv: np.ndarray, width: int, height: int, box: RelBox, label: str) -> dict[str, str]:
    """Named colours of the object in ``box``: upper/lower for a person, body for a vehicle."""
    if yuv.ndim != 2 or yuv.shape[0] != height * 3 // 2:
        return {}  # luma only: no colour to name
    if label == PERSON:
        parts = {"upper": _sub(box, 0.2, 0.15, 0.8, 0.5), "lower": _sub(box, 0.25, 0.55, 0.75, 0.9)}
    elif label in VEHICLES:
        parts = {"body": _sub(box, 0.15, 0.2, 0.85, 0.8)}
    else:
        return {}
    out = {}
    for name, region in parts.items():
        c = dominant_colour(yuv, width, height, region)
        if c is not None:
            out[name] = c
    return out


def side(box: RelBox, edge: float = EDGE) -> str:
    """The frame edge ``box`` touches (nearest first), or ``inside``."""
    gaps = {"left": box[0], "right": 1.0 - box[2], "top": box[1], "bottom": 1.0 - box[3]}
    name, gap = min(gaps.items(), key=lambda kv: kv[1])
    return name if gap <= edge else "inside"


@dataclass
class _Seen:
    first: RelBox | None = None
    last: RelBox | None = None
    colours: dict[str, str] = field(default_factory=dict)


class Appearances:
    """Per open object event: first and last box, colours of the best frame (analysis thread)."""

    def __init__(self, keep: int = 8) -> None:
        self._events: dict[str, _Seen] = {}
        self._keep = keep

    def _get(self, event_id: str) -> _Seen:
        if event_id not in self._events:
            self._events[event_id] = _Seen()
            while len(self._events) > self._keep:
                self._events.pop(next(iter(self._events)))
        return self._events[event_id]

    def observe(self, event_id: str, boxes: list[RelBox]) -> None:
        """Boxes of the event's object seen in this frame."""
        if not boxes:
            return
        s = self._get(event_id)
        if s.first is None:
            s.first = boxes[0]
        s.last = boxes[-1]

    def best_frame(self, event_id: str, yuv: np.ndarray, width: int, height: int, box: RelBox,
                   label: str) -> None:
        """The frame the snapshot is taken from: name its colours."""
        found = colours(yuv, width, height, box, label)
        if found:
            self._get(event_id).colours = found

    def decorate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The event payload with ``appearance`` added when anything is known."""
        s = self._events.get(payload.get("id", ""))
        if s is None or payload.get("kind") != "object":
            return payload
        app: dict[str, Any] = {}
        if s.colours:
            app["colours"] = dict(s.colours)
        if s.first is not None:
            app["entry"] = side(s.first)
        if payload.get("phase") == "end" and s.last is not None:
            app["exit"] = side(s.last)
        if payload.get("phase") == "end":
            self._events.pop(payload["id"], None)
        return {**payload, "appearance": app} if app else payload
