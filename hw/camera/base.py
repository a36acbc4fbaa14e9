"""The ``FrameSource`` seam: what every camera backend hands the node.

A backend delivers :class:`~hw.media.Frame` objects: a *main* image for the encoder (YUV 4:2:0, the
format hardware encoders and libx264 take without conversion) and a small *lores* luma image
for analysis (motion, person detection), plus two timestamps. A backend that receives
already-encoded H.264 (an IP camera over RTSP, a hardware encoder) attaches the encoded
packet instead of, or in addition to, pixels: the recorder then writes it without re-encoding.

Backends never import ``node``; the node reaches them only through this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from hw.media import Frame


class SourceError(RuntimeError):
    """The source cannot be opened or stopped delivering (camera vanished, stream dropped).
    Its message never carries a camera password (FFmpeg quotes URLs in its errors)."""

    def __init__(self, message: str = "") -> None:
        from hw.redact import redact_text

        super().__init__(redact_text(message))


class FrameSource(Protocol):
    """A camera. ``frames()`` yields until ``close()`` or the end of a finite source.

    Thread: ``frames()`` runs on the capture thread only; ``close()`` may be called from any
    thread and makes ``frames()`` return soon after.
    """

    name: str
    width: int
    height: int
    fps: float
    #: True when frames carry pre-encoded H.264 packets (no encoder needed).
    encoded: bool

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, object]:
        """Facts for diagnostics (backend, device, sizes, reconnects...)."""
        ...


def luma_downscale(y: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Box-average a luma plane down to ``out_w`` x ``out_h`` (integer factors, else stride).

    Cost: one pass over the input (≈1 ms for 1080p → 320x240 here); no allocation beyond the
    output. Used by backends that have no hardware lores stream.
    """
    h, w = y.shape
    fy, fx = h // out_h, w // out_w
    if fy >= 1 and fx >= 1 and fy * out_h <= h and fx * out_w <= w:
        # Sample a 2x2 grid inside each block: cheap and alias-resistant enough for analysis.
        if fy >= 2 and fx >= 2:
            sub = y[: fy * out_h : fy, : fx * out_w : fx].astype(np.uint16)
            sub += y[fy // 2 : fy * out_h : fy, fx // 2 : fx * out_w : fx]
            return (sub >> 1).astype(np.uint8)
        return np.ascontiguousarray(y[: fy * out_h : fy, : fx * out_w : fx])
    ys = (np.arange(out_h) * h // out_h).astype(np.intp)
    xs = (np.arange(out_w) * w // out_w).astype(np.intp)
    return y[ys][:, xs]
