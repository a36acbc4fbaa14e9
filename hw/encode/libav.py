"""Software H.264 through PyAV's libx264 (the last-resort encoder, and the one used here).

Settings chosen for a recorder on a small CPU: ``ultrafast`` + ``zerolatency`` (no B-frames,
no lookahead: a packet out for every frame in), a fixed keyframe interval with scene-cut
detection off (segments cut at predictable keyframes), SPS/PPS repeated before every IDR
(each segment decodes on its own). The rate follows a :class:`~hw.encode.rate.RateSettings`:
libx264 takes constant quality (CRF) under a VBV cap (the storage budget's mode), or an average
bitrate with the cap at 2x it (``RateSettings.fixed``); hardware encoders (``h264_v4l2m2m``)
take the bitrate and the intra period.

:meth:`LibavEncoder.reconfigure` changes the settings while running: FFmpeg cannot change an
open encoder's rate control, so a fresh context is opened exactly where the next keyframe is
due. The stream loses nothing (no lookahead, no delayed frames), timestamps continue, and the
keyframe cadence is kept, so segments and clips are unaffected.

Cost: ≈ 2-7 ms per 720p frame, 6-15 ms per 1080p frame on this machine's cores.
Thread: all methods on the encoder thread.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction

import numpy as np

from hw.encode.base import EncoderError
from hw.encode.rate import RateSettings
from hw.media import TIME_BASE, EncodedPacket, Frame, StreamInfo


class LibavEncoder:
    """A PyAV/FFmpeg encoder by codec name (``libx264`` by default)."""

    def __init__(self, bitrate_kbps: int, gop_s: float, *, codec: str = "libx264",
                 preset: str = "ultrafast", profile: str = "high",
                 rate: RateSettings | None = None) -> None:
        self.name = codec
        self.rate = rate or RateSettings.fixed(bitrate_kbps, gop_s)
        self.preset = preset
        self.profile = profile
        self._ctx = None
        self._stream: StreamInfo | None = None
        self._t0: float | None = None
        self._meta: dict[int, tuple] = {}
        self._headers = b""
        self._pending: RateSettings | None = None
        self._since_key = 0
        self.frames_in = 0
        self.reconfigured = 0

    @property
    def bitrate_kbps(self) -> int:
        return self.rate.bitrate_kbps

    @property
    def gop_s(self) -> float:
        return self.rate.gop_s

    def reconfigure(self, rate: RateSettings) -> None:
        """Use ``rate`` from the next keyframe on (any thread; applied on the encoder thread)."""
        self._pending = rate

    def start(self, stream: StreamInfo) -> StreamInfo:
        self._stream = stream
        self._ctx = self._open(stream, self.rate)
        self._headers = bytes(self._ctx.extradata or b"")
        if not self._headers.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
            self._headers = b""  # avcC (global-header) form: not insertable in-band as is
        return StreamInfo("h264", stream.width, stream.height, stream.fps, self._headers)

    def _open(self, stream: StreamInfo, rate: RateSettings):
        import av

        gop = rate.gop_frames(stream.fps)
        crf = rate.crf is not None and self.name == "libx264"
        try:
            ctx = av.CodecContext.create(self.name, "w")
            ctx.width, ctx.height = stream.width, stream.height
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = TIME_BASE
            ctx.framerate = Fraction(stream.fps).limit_denominator(1001)
            ctx.bit_rate = 0 if crf else rate.bitrate_kbps * 1000
            ctx.gop_size = gop
            ctx.max_b_frames = 0
            if self.name != "libx264":
                # Hardware encoders take the generic AVCodecContext profile; an encoder that
                # does not know it keeps its default (reported by the probe's output).
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    ctx.profile = {"baseline": "Constrained Baseline", "main": "Main",
                                   "high": "High"}.get(self.profile, self.profile)
            if self.name == "libx264":
                ctx.options = {
                    "preset": self.preset,
                    "tune": "zerolatency",
                    "profile": self.profile,
                    "x264-params": rate.x264_params(stream.fps),
                }
            ctx.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise EncoderError(f"encoder {self.name} cannot open: {exc}") from exc
        return ctx

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        import av

        if self._ctx is None:
            raise EncoderError("encoder not started")
        if frame.main is None:
            raise EncoderError("frame has no pixels to encode")
        if self._t0 is None:
            self._t0 = frame.mono
        if self._pending is not None and self._stream is not None and (
                self._since_key >= self.rate.gop_frames(self._stream.fps)):
            # the next frame is a keyframe anyway: start it with a fresh context
            rate, self._pending = self._pending, None
            self._ctx = self._open(self._stream, rate)
            self.rate = rate
            self.reconfigured += 1
            self._since_key = 0
        if self._since_key >= self.rate.gop_frames(self._stream.fps if self._stream else 1.0):
            self._since_key = 0
        self._since_key += 1
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.main), format="yuv420p")
        pts = round((frame.mono - self._t0) * 90_000)
        vf.pts = pts
        vf.time_base = TIME_BASE
        if frame.meta.get("force_keyframe"):  # the stream restarted here: start a GOP with it
            vf.pict_type = av.video.frame.PictureType.I
        self._meta[pts] = (frame.utc, frame.mono, frame.seq)
        self.frames_in += 1
        try:
            return self._wrap(self._ctx.encode(vf))
        except av.error.FFmpegError as exc:
            raise EncoderError(f"encoder {self.name} failed: {exc}") from exc

    def flush(self) -> list[EncodedPacket]:
        if self._ctx is None:
            return []
        return self._wrap(self._ctx.encode(None))

    def _wrap(self, packets) -> list[EncodedPacket]:
        out = []
        for p in packets:
            utc, mono, seq = self._meta.pop(p.pts, (None, None, 0))
            if utc is None:  # cannot happen with zerolatency; keep the packet anyway
                continue
            data = bytes(p)
            if p.is_keyframe and self._headers and not has_sps(data):
                # Some hardware encoders (V4L2 M2M) put SPS/PPS only in extradata: repeat them
                # before each IDR so every segment and clip decodes on its own.
                data = self._headers + data
            out.append(EncodedPacket(data, p.pts, p.dts if p.dts is not None else p.pts,
                                     bool(p.is_keyframe), utc, mono, seq))
        return out

    def close(self) -> None:
        self._ctx = None
        self._meta.clear()


def has_sps(data: bytes) -> bool:
    """True when an SPS NAL (type 7) comes before the first slice of this Annex-B access unit.

    Walks start codes only up to the first slice (emulation prevention guarantees no start code
    inside a NAL), so the cost is the size of the headers, not of the picture.
    """
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        kind = data[i + 3] & 0x1F
        if kind == 7:
            return True
        if 1 <= kind <= 5:
            return False
        i = data.find(b"\x00\x00\x01", i + 3)
    return False
