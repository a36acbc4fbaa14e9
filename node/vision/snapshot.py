"""Event snapshots: a JPEG of the main frame with the detection box drawn in.

Encoded with PyAV's ``mjpeg`` encoder (no extra dependency). The box is drawn into a copy of
the luma plane as a light frame with a dark inner line (visible on bright and dark scenes);
it is also given as coordinates in the event messages, so the station can redraw it.
Frames wider than ``max_width`` are halved (box-averaged) until they fit, which keeps the
MQTT message small (≈20 kB for 768x432 at quality 5) and the encode short.

Cost: ≈5-15 ms for 1280x720 here, on the analysis thread, once or twice per object event.
:class:`SnapshotFrames` keeps the frames a snapshot may be taken from.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np

from node.events import PublishSnapshot, RelBox, TakeSnapshot

log = logging.getLogger(__name__)


def draw_box(yuv: np.ndarray, width: int, height: int, box: RelBox, thickness: int = 0) -> None:
    """Draw ``box`` (relative coordinates) into the Y plane of a yuv420p array, in place."""
    t = thickness or max(2, width // 320)
    x0, y0 = int(box[0] * width), int(box[1] * height)
    x1, y1 = min(width, int(box[2] * width)), min(height, int(box[3] * height))
    if x1 - x0 < 2 * t or y1 - y0 < 2 * t:
        return
    y = yuv[:height]
    for value, inset in ((235, 0), (16, t)):
        a0, b0, a1, b1 = x0 + inset, y0 + inset, x1 - inset, y1 - inset
        y[b0 : b0 + t, a0:a1] = value
        y[b1 - t : b1, a0:a1] = value
        y[b0:b1, a0 : a0 + t] = value
        y[b0:b1, a1 - t : a1] = value


def _halve(yuv: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """Half-size yuv420p (2x2 means); sizes kept multiples of 4 so chroma stays even."""
    w2, h2 = (width // 4) * 2, (height // 4) * 2
    y = yuv[:height, : w2 * 2].reshape(h2, 2, w2, 2).mean(axis=(1, 3))
    cw, ch = width // 2, height // 2
    planes = yuv[height:].reshape(2, ch, cw)
    out = np.empty((h2 * 3 // 2, w2), np.uint8)
    out[:h2] = y.round().astype(np.uint8)
    for i, p in enumerate(planes):
        c = p[: h2, : w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3)).round().astype(np.uint8)
        out[h2 + i * (h2 // 4) : h2 + (i + 1) * (h2 // 4)] = c.reshape(h2 // 4, w2)
    return out, w2, h2


def encode_jpeg(yuv: np.ndarray, width: int, height: int, box: RelBox | None = None, *,
                max_width: int = 1280, quality: int = 5) -> bytes:
    """JPEG bytes of a yuv420p frame (PyAV layout), box drawn in. ``quality``: 2 (best) .. 31.

    The input array is not modified.
    """
    import av  # lazy: only needed when an event happens

    img = yuv.copy()
    if box is not None:
        draw_box(img, width, height, box)
    while width > max_width and width >= 8 and height >= 8:
        img, width, height = _halve(img, width, height)
    vf = av.VideoFrame.from_ndarray(img, format="yuv420p").reformat(format="yuvj420p")
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width, cc.height, cc.pix_fmt = width, height, "yuvj420p"
    cc.time_base = Fraction(1, 1)
    # Constant quality: the QSCALE flag plus qmin = qmax (global_quality alone is ignored).
    cc.flags = cc.flags | av.codec.context.Flags.qscale
    cc.global_quality = quality * 118  # FF_QP2LAMBDA
    cc.qmin = cc.qmax = quality
    vf.pts = 0
    data = b"".join(bytes(p) for p in cc.encode(vf))
    data += b"".join(bytes(p) for p in cc.encode(None))
    return data


def grey_to_yuv(luma: np.ndarray) -> np.ndarray:
    """A luma-only image as yuv420p with neutral chroma (snapshots of encoded-only sources)."""
    h, w = luma.shape
    h2, w2 = h - h % 2, w - w % 2
    out = np.full((h2 * 3 // 2, w2), 128, np.uint8)
    out[:h2] = luma[:h2, :w2]
    return out


class SnapshotFrames:
    """The frames an event snapshot may be taken from, kept on the analysis thread.

    Every frame the model looks at is kept (the last ``keep`` of them, not copied: frames are
    read-only once delivered); the frame of the open object event's best detection is *pinned*
    (copied once) so its snapshot survives however long the event runs. :meth:`take` encodes
    the JPEG for a :class:`~node.events.TakeSnapshot` action.

    Thread: the analysis thread only.
    """

    def __init__(self, max_width: int = 1280, keep: int = 8) -> None:
        self._max_width, self._keep = max_width, keep
        self._recent: dict[int, tuple[np.ndarray, int, int]] = {}
        self._pinned: tuple[int, np.ndarray, int, int] | None = None

    def keep(self, seq: int, image: np.ndarray, width: int, height: int) -> None:
        """Keep frame ``seq`` (a yuv420p main image, or lores luma when there are no pixels)."""
        self._recent[seq] = (image, width, height)
        if len(self._recent) > self._keep:
            self._recent.pop(next(iter(self._recent)))

    def clear(self) -> None:
        """Forget every frame (frame numbers may start again)."""
        self._recent.clear()
        self._pinned = None

    def pin(self, seq: int | None) -> None:
        """Pin (copy) frame ``seq``, the open object event's best detection; None: no event."""
        if seq is None:
            self._pinned = None
            return
        if self._pinned is not None and self._pinned[0] == seq:
            return
        got = self._recent.get(seq)
        if got is not None:
            self._pinned = (seq, got[0].copy(), got[1], got[2])

    def frame(self, seq: int) -> tuple[np.ndarray, int, int] | None:
        """Frame ``seq`` as kept (image, width, height), or None when no longer held."""
        if self._pinned is not None and self._pinned[0] == seq:
            return self._pinned[1], self._pinned[2], self._pinned[3]
        return self._recent.get(seq)

    def take(self, a: TakeSnapshot) -> PublishSnapshot | None:
        """The snapshot action's JPEG, or None (frame no longer held, encode failed: logged)."""
        got = self.frame(a.seq)
        if got is None:
            log.warning("snapshot frame %d of event %s no longer held", a.seq, a.event_id)
            return None
        image, w, h = got
        if image.ndim == 2 and image.shape[0] == h:  # lores luma only
            image = grey_to_yuv(image)
            h, w = image.shape[0] * 2 // 3, image.shape[1]
        try:
            jpeg = encode_jpeg(image, w, h, a.box, max_width=self._max_width)
        except Exception:
            log.exception("snapshot of event %s failed", a.event_id)
            return None
        return PublishSnapshot(a.event_id, jpeg, a.box, a.label, a.score, a.utc)
