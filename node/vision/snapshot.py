"""Event snapshots: a JPEG of the main frame with the detection box drawn in.

Encoded with PyAV's ``mjpeg`` encoder (no extra dependency). The box is drawn into a copy of
the luma plane as a light frame with a dark inner line (visible on bright and dark scenes);
it is also given as coordinates in the event messages, so the station can redraw it.
Frames wider than ``max_width`` are halved (box-averaged) until they fit, which keeps the
MQTT message small (≈20 kB for 768x432 at quality 5) and the encode short.

Cost: ≈5-15 ms for 1280x720 here, on the analysis thread, once or twice per object event.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

RelBox = tuple[float, float, float, float]


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
