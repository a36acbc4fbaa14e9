"""Cameras reached through PyAV/FFmpeg: video files, lavfi graphs, V4L2 devices, RTSP.

Decoded frames are converted to yuv420p at the configured main size (no conversion when the
source already matches) and a luma lores image is cut from the Y plane.

Assumptions: one video stream; a file source loops at its end when ``loop`` is set (demo);
timestamps: ``mono`` is taken from the injected clock when the frame is delivered (a live
source) or derived from the stream's pts (``realtime=False``: files decoded as fast as
possible, e.g. in tests and benchmarks, where scene time must follow the video).
Cost: decode + (optional) scale; decode of 720p H.264 ≈ 1-3 ms here.
Thread: ``frames()`` on the capture thread; ``close()`` from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from hw.camera.base import Frame, SourceError, luma_downscale


def open_args(spec: str) -> tuple[str, dict[str, Any]]:
    """Map a ``camera.source`` string to ``av.open`` arguments."""
    if spec.startswith("lavfi:"):
        return spec[6:], {"format": "lavfi"}
    if spec.startswith("/dev/video"):
        return spec, {"format": "v4l2"}
    if spec.startswith(("rtsp://", "rtsps://")):
        return spec, {"options": {"rtsp_transport": "tcp", "timeout": "5000000"}}
    if spec.startswith("file://"):
        return spec[7:], {}
    return spec, {}


class PyAVSource:
    """A :class:`~hw.camera.base.FrameSource` over anything FFmpeg opens."""

    encoded = False

    def __init__(
        self,
        spec: str,
        width: int,
        height: int,
        fps: float,
        lores: tuple[int, int],
        clock,
        *,
        realtime: bool = True,
        loop: bool = True,
        max_frames: int | None = None,
    ) -> None:
        self.name = spec
        self.spec = spec
        self.width, self.height, self.fps = width, height, fps
        self.lores_size = lores
        self._clock = clock
        self._realtime = realtime
        self._loop = loop and not spec.startswith(("rtsp", "/dev/video", "lavfi:"))
        self._max = max_frames
        self._stop = threading.Event()
        self.frames_out = 0
        self.opens = 0
        target, kwargs = open_args(spec)
        if not kwargs and not spec.startswith(("http://", "https://")) and not Path(target).exists():
            raise SourceError(f"camera source {spec!r}: file not found")

    def close(self) -> None:
        self._stop.set()

    def describe(self) -> dict[str, object]:
        return {"backend": "pyav", "source": self.spec, "width": self.width, "height": self.height,
                "fps": self.fps, "frames": self.frames_out, "opens": self.opens}

    def _open(self):
        import av

        target, kwargs = open_args(self.spec)
        try:
            container = av.open(target, **kwargs)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"camera source {self.spec!r} cannot be opened: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"camera source {self.spec!r} has no video stream")
        self.opens += 1
        return container

    def frames(self) -> Iterator[Frame]:
        import av

        seq = 0
        start_mono = self._clock.monotonic()
        start_utc = self._clock.utc()
        period = 1.0 / self.fps
        while not self._stop.is_set():
            container = self._open()
            try:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for vf in container.decode(stream):
                    if self._stop.is_set() or (self._max is not None and seq >= self._max):
                        return
                    if self._realtime:
                        due = start_mono + seq * period
                        wait = due - self._clock.monotonic()
                        if wait > 0:
                            self._clock.sleep(wait)
                        mono, utc = self._clock.monotonic(), self._clock.utc()
                    else:
                        mono = start_mono + seq * period
                        utc = start_utc + timedelta(seconds=seq * period)
                    yield self._to_frame(vf, seq, mono, utc)
                    seq += 1
                    self.frames_out = seq
            except av.error.FFmpegError as exc:
                raise SourceError(f"camera source {self.spec!r} failed: {exc}") from exc
            finally:
                container.close()
            if not self._loop:
                return

    def _to_frame(self, vf, seq: int, mono: float, utc) -> Frame:
        if vf.width != self.width or vf.height != self.height or vf.format.name != "yuv420p":
            vf = vf.reformat(width=self.width, height=self.height, format="yuv420p")
        main = vf.to_ndarray()
        lores = luma_downscale(main[: self.height], *self.lores_size)
        return Frame(seq=seq, mono=mono, utc=utc, width=self.width, height=self.height,
                     main=main, lores=lores)
