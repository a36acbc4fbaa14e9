"""The sub-stream: a small, low-rate H.264 for the video wall and weak links.

Frames come from the recording pipeline after the on-screen text is burned in (so the
sub-stream shows the same time stamp), at most ``fps`` a second. Each is scaled with
libswscale and encoded by the same hardware-first encoder choice as the main stream
(:func:`hw.encode.select.open_encoder`: ``h264_v4l2m2m`` on a Pi 4, libx264 where the board
has no encoder, as on a Pi 5). A Raspberry Pi camera hands no main pixels (its ISP feeds the
hardware encoder directly): there the ISP's second output, the lores YUV420 image
(``frame.meta["lores_yuv"]``), feeds the sub-stream — scaled only if its size differs — and the
sub-stream has no on-screen clock (that is burned into the main image only).

The hand-off queue holds two frames and drops the oldest: a slow sub-encoder never stalls
recording. Keyframes every ``gop_s`` let a viewer start within that time.
Thread: ``offer*`` on the producer's thread; encoding on ``live-sub-encoder``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from hw.camera.base import Frame
from hw.encode.base import EncodedPacket, StreamInfo
from node.queues import Closed, DropOldestQueue

log = logging.getLogger(__name__)


def scale_yuv420(main: np.ndarray, width: int, height: int, out_w: int, out_h: int) -> np.ndarray:
    """A planar yuv420p array (``(h*3/2, w)``) scaled to ``out_w`` x ``out_h`` by libswscale."""
    import av

    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(main), format="yuv420p")
    return vf.reformat(width=out_w, height=out_h, format="yuv420p").to_ndarray()


class SubStream:
    def __init__(self, width: int, height: int, fps: float, bitrate_kbps: int, gop_s: float,
                 on_packet: Callable[[EncodedPacket], None], *, candidates: list[str] | None = None,
                 open_encoder: Callable | None = None) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.bitrate_kbps, self.gop_s = bitrate_kbps, gop_s
        self._on_packet = on_packet
        self._candidates = candidates
        self._open_encoder = open_encoder
        self._q: DropOldestQueue[Frame] = DropOldestQueue(2)
        self._last_mono: float | None = None
        self.encoder_name = ""
        self.frames = 0
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="live-sub-encoder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Any thread: the encoder thread ends after the frame in hand."""
        self._q.close()

    def stop(self, timeout: float = 5.0) -> bool:
        self._q.close()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def dropped(self) -> int:
        return self._q.dropped

    def _due(self, mono: float) -> bool:
        last = self._last_mono
        if last is not None and 0 <= mono - last < 0.95 / self.fps:
            return False
        self._last_mono = mono
        return True

    def offer(self, frame: Frame) -> None:
        """Producer thread: a frame with main pixels, or a camera's lores YUV420 (scaled, if
        need be, on the sub-encoder thread)."""
        if frame.main is None:
            yuv = frame.meta.get("lores_yuv")
            if not isinstance(yuv, np.ndarray):
                return
            frame = replace(frame, width=yuv.shape[1], height=yuv.shape[0] * 2 // 3, main=yuv, packet=None)
        if self._due(frame.mono):
            self._q.put(frame)

    def _encoder(self):
        if self._open_encoder is not None:
            return self._open_encoder()
        from hw.encode.select import open_encoder

        stream = StreamInfo("h264", self.width, self.height, self.fps)
        encoder, report = open_encoder(self._candidates or None, stream, bitrate_kbps=self.bitrate_kbps,
                                       gop_s=self.gop_s, profile="baseline")
        log.info("live sub-stream: %s", report.summary())
        return encoder

    def _run(self) -> None:
        encoder = None
        try:
            encoder = self._encoder()
            self.encoder_name = getattr(encoder, "name", "")
            while True:
                try:
                    frame = self._q.get(timeout=1.0)
                except Closed:
                    break
                if frame is None:
                    continue
                if (frame.width, frame.height) != (self.width, self.height):
                    small = scale_yuv420(frame.main, frame.width, frame.height, self.width, self.height)
                    frame = replace(frame, width=self.width, height=self.height, main=small, packet=None)
                for pkt in encoder.encode(frame):
                    self._on_packet(pkt)
                self.frames += 1
        except Exception as exc:  # the encoder failed: the session ends, recording goes on
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("live sub-stream encoder failed")
        finally:
            if encoder is not None:
                encoder.close()
