"""The vocabulary of the video path: a captured :class:`Frame`, an :class:`EncodedPacket`, the
:class:`StreamInfo` an output muxes, and the packets' :data:`TIME_BASE`.

Cameras (:mod:`hw.camera`) deliver frames (sometimes with a packet attached), encoders
(:mod:`hw.encode`) turn frames into packets, outputs (the recorder, the pre-roll ring) take
packets. All of them speak these types, so they live here, below both seams: neither seam
imports the other.

Thread: plain values; a frame's arrays are not copied, so a frame is read-only once delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

import numpy as np

#: Time base of packet timestamps: the 90 kHz clock of MPEG-TS and RTP.
TIME_BASE = Fraction(1, 90_000)


@dataclass(slots=True)
class Frame:
    """One captured frame.

    Attributes:
        seq: frame counter from the source, starting at 0, never reused.
        mono: capture time in seconds on the monotonic clock (sensor timestamp where known).
        utc: wall time of capture, UTC.
        width, height: size of the main image.
        main: main image as a planar yuv420p array of shape ``(height * 3 // 2, width)``
            (Y plane, then U and V planes packed as PyAV lays them out), or ``None`` when the
            source only delivers encoded packets.
        lores: luma (grey) analysis image, shape ``(lh, lw)``, uint8. Always present.
        packet: the already-encoded H.264 packet of this frame, when the source has one.
        meta: backend facts about this frame. ``meta["gap"]`` (frames were lost just before
            it) and ``meta["discontinuity"]`` (the stream restarted at it) are read by the
            node's encoder thread, which marks the frame's packet
            (:attr:`EncodedPacket.discontinuity`) so the recorder cuts there, and sets
            ``meta["force_keyframe"]`` on a frame with pixels: an encoder that can (libx264)
            starts a new GOP with it, so the cut loses nothing.
    """

    seq: int
    mono: float
    utc: datetime
    width: int
    height: int
    main: np.ndarray | None
    lores: np.ndarray
    packet: EncodedPacket | None = None
    meta: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class StreamInfo:
    """What an output needs to know to mux the stream (set before the first packet)."""

    codec: str  # "h264"
    width: int
    height: int
    fps: float
    #: SPS/PPS as Annex-B (may be empty when they only travel in-band).
    extradata: bytes = b""


@dataclass(slots=True, frozen=True)
class EncodedPacket:
    """One access unit of H.264.

    Attributes:
        data: Annex-B bytes.
        pts, dts: in :data:`TIME_BASE` units, from the capture's monotonic time.
        keyframe: an IDR; a segment may start here.
        utc: wall time of the capture of this frame.
        mono: monotonic capture time in seconds.
        seq: frame counter of the source frame.
        discontinuity: packets before this one were lost (a camera queue overflowed) or came
            from a stream that restarted (a reconnect): a segment must not span this point,
            so the recorder cuts here (see :class:`node.record.writer.SegmentWriter`).
    """

    data: bytes
    pts: int
    dts: int
    keyframe: bool
    utc: datetime
    mono: float
    seq: int = 0
    discontinuity: bool = False

    @property
    def size(self) -> int:
        return len(self.data)
