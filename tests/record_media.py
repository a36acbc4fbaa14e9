"""Real H.264 for the recording tests: libx264 through PyAV, or a real clip demuxed.

Packets are :class:`hw.encode.base.EncodedPacket` exactly as the app's encoders hand them
(Annex-B, SPS/PPS in-band before each IDR, pts/dts in 1/90000, ``utc`` and ``mono``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av

from hw.media import TIME_BASE, EncodedPacket, StreamInfo
from node.record import mp4box

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@lru_cache(maxsize=8)
def _encoded(n: int, fps: int, width: int, height: int, gop: int, kbps: int) -> tuple:
    src = av.open(f"testsrc2=size={width}x{height}:rate={fps}", format="lavfi")
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = TIME_BASE
    enc.framerate = fps
    enc.gop_size = gop
    enc.max_b_frames = 0
    enc.bit_rate = kbps * 1000
    enc.options = {"preset": "ultrafast", "tune": "zerolatency",
                   "x264-params": f"scenecut=0:keyint={gop}:min-keyint={gop}"}
    out = []
    for i, frame in enumerate(src.decode(video=0)):
        if i >= n:
            break
        frame = frame.reformat(format="yuv420p")
        frame.pict_type = av.video.frame.PictureType.NONE
        frame.pts = i * 90_000 // fps
        frame.time_base = TIME_BASE
        out.extend((bytes(p), p.pts, p.dts, bool(p.is_keyframe)) for p in enc.encode(frame))
    out.extend((bytes(p), p.pts, p.dts, bool(p.is_keyframe)) for p in enc.encode(None))
    src.close()
    return tuple(out)


def encode_packets(seconds: float, fps: int = 15, size: tuple[int, int] = (320, 180),
                   gop_s: float = 1.0, kbps: int = 300, start: datetime = T0,
                   mono0: float = 100.0) -> tuple[StreamInfo, list[EncodedPacket]]:
    """``seconds`` of libx264 H.264 of the lavfi test pattern, timestamped from ``start``."""
    n = round(seconds * fps)
    raw = _encoded(n, fps, size[0], size[1], max(1, round(gop_s * fps)), kbps)
    pkts = [EncodedPacket(d, pts, dts, key, start + timedelta(seconds=pts / 90_000),
                          mono0 + pts / 90_000, i) for i, (d, pts, dts, key) in enumerate(raw)]
    return StreamInfo("h264", size[0], size[1], float(fps)), pkts


def clip_packets(path: Path, start: datetime = T0, mono0: float = 100.0
                 ) -> tuple[StreamInfo, list[EncodedPacket]]:
    """The H.264 packets of a real MP4 clip as Annex-B, re-timed to 1/90000 from ``start``."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        params = mp4box.avcc_parameter_sets(bytes(vs.codec_context.extradata or b""))
        fps = float(vs.average_rate)
        pkts = []
        first = None
        for p in c.demux(vs):
            if p.dts is None:
                continue
            if first is None:
                first = p.dts
            pts = round((p.pts - first) * p.time_base / TIME_BASE)
            dts = round((p.dts - first) * p.time_base / TIME_BASE)
            data = mp4box.avcc_to_annexb(bytes(p))
            if p.is_keyframe:
                data = params + data
            pkts.append(EncodedPacket(data, pts, dts, bool(p.is_keyframe),
                                      start + timedelta(seconds=pts / 90_000), mono0 + pts / 90_000,
                                      len(pkts)))
        info = StreamInfo("h264", vs.width, vs.height, fps)
    return info, pkts


def retime(pkts: list[EncodedPacket], offset_s: float, wall_offset_s: float | None = None
           ) -> list[EncodedPacket]:
    """Shift pts/dts/mono by ``offset_s`` and utc by ``wall_offset_s`` (default the same)."""
    w = offset_s if wall_offset_s is None else wall_offset_s
    d = round(offset_s * 90_000)
    return [EncodedPacket(p.data, p.pts + d, p.dts + d, p.keyframe,
                          p.utc + timedelta(seconds=w), p.mono + offset_s, p.seq) for p in pkts]


def decode_count(path: Path) -> int:
    """Frames decoded from a file with PyAV; raises on any decode error."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


__all__ = ["T0", "Fraction", "clip_packets", "decode_count", "encode_packets", "retime"]
