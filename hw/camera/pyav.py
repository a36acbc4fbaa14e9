"""Cameras reached through PyAV/FFmpeg: video files, lavfi graphs, V4L2 devices, RTSP.

Two modes:

* **decode** (files, lavfi, V4L2 — USB cameras, a Jetson's UVC camera): frames are decoded,
  converted to yuv420p at the configured main size (no conversion when they already match) and
  a luma lores image is cut from the Y plane. The node encodes ``main``.
* **passthrough** (RTSP IP cameras by default; any H.264 source with ``passthrough=True``): the
  camera's H.264 packets travel to the recorder untouched — ``frame.packet`` carries them,
  Annex-B, byte for byte as received (MP4/MKV files are converted from length-prefixed to
  Annex-B by FFmpeg's ``h264_mp4toannexb``, which changes only the framing) — and ``main`` is
  ``None``. Every packet is still decoded (P-frames need their references) but only the Y plane
  is touched, box-averaged to the lores size, at ``analysis_fps`` at most. A passed-through
  stream keeps the camera's own on-screen text.

Live sources (RTSP, V4L2) reconnect with exponential backoff when the stream drops or cannot
be opened; each drop is counted and reported by :meth:`PyAVSource.describe`, and the first frame
after a reconnect carries ``meta["discontinuity"] = True`` so the recorder can cut.

Timestamps: ``mono``/``utc`` come from the injected clock when a frame is delivered (live and
``realtime`` sources) or follow the stream's pts (``realtime=False``: files decoded as fast as
possible in tests and benchmarks). In passthrough the packet pts/dts are the camera's, rebased
to the node's monotonic origin and kept increasing across reconnects.

Cost: decode of 720p H.264 ≈ 1-3 ms here; passthrough adds a lores box-average (≈0.2 ms).
Thread: ``frames()`` on the capture thread; ``close()`` and ``describe()`` from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hw.camera.base import SourceError, luma_downscale
from hw.encode.libav import has_sps
from hw.media import TIME_BASE, EncodedPacket, Frame


def open_args(spec: str) -> tuple[str, dict[str, Any]]:
    """Map a ``camera.source`` string to ``av.open`` arguments."""
    if spec.startswith("lavfi:"):
        return spec[6:], {"format": "lavfi"}
    if spec.startswith("/dev/video"):
        return spec, {"format": "v4l2"}
    if spec.startswith(("rtsp://", "rtsps://")):
        # TCP: no loss-induced smearing on a lossy link; 5 s socket timeout detects a dead
        # camera (the stream then counts as dropped and is reopened).
        return spec, {"options": {"rtsp_transport": "tcp", "timeout": "5000000"}}
    if spec.startswith("file://"):
        return spec[7:], {}
    return spec, {}


def v4l2_options(width: int, height: int, fps: float, input_format: str | None) -> dict[str, str]:
    """Ask a V4L2 camera for the configured size and rate (the driver picks the nearest mode;
    frames are scaled to the configured size if it differs). USB cameras deliver 720p and up at
    full rate only as MJPEG: ``input_format="mjpeg"``."""
    opts = {"video_size": f"{width}x{height}", "framerate": f"{fps:g}"}
    if input_format:
        opts["input_format"] = input_format
    return opts


def is_live(spec: str) -> bool:
    return spec.startswith(("rtsp://", "rtsps://", "/dev/video", "http://", "https://"))


class PyAVSource:
    """A :class:`~hw.camera.base.FrameSource` over anything FFmpeg opens.

    ``passthrough``: ``None`` = automatic (RTSP carrying H.264), or forced on/off.
    ``analysis_fps``: most lores images per second in passthrough (0 = every frame).
    ``backoff_s``: (first, longest) wait between reconnect attempts of a live source;
    ``max_retries``: give up (raise :class:`SourceError`) after this many failed attempts in a
    row (``None`` = never: a pole node waits for its camera forever).
    ``v4l2_format``: V4L2 pixel format to request (``"mjpeg"``, ``"yuyv422"``), or the driver's.
    """

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
        passthrough: bool | None = None,
        analysis_fps: float = 0.0,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        max_retries: int | None = None,
        v4l2_format: str | None = None,
    ) -> None:
        self.name = spec
        self.spec = spec
        self.width, self.height, self.fps = width, height, fps
        self.lores_size = lores
        self._clock = clock
        self._live = is_live(spec)
        self._realtime = realtime or self._live
        self._loop = loop and not self._live and not spec.startswith("lavfi:")
        self._max = max_frames
        self._want_passthrough = passthrough
        self.encoded = bool(passthrough) if passthrough is not None else spec.startswith("rtsp")
        self.analysis_fps = analysis_fps
        self._backoff = backoff_s
        self._max_retries = max_retries
        self.v4l2_format = v4l2_format
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.frames_out = 0
        self.opens = 0
        self.reconnects = 0
        self.failures = 0
        self.state = "idle"
        self.last_error = ""
        self.next_retry_s = 0.0
        self.lores_decoded = 0
        self.skipped_before_key = 0
        self.codec = ""
        target, kwargs = open_args(spec)
        if not kwargs and not self._live and not Path(target).exists():
            raise SourceError(f"camera source {spec!r}: file not found")

    def close(self) -> None:
        self._stop.set()

    def describe(self) -> dict[str, object]:
        with self._lock:
            return {"backend": "pyav", "source": _redact(self.spec), "width": self.width,
                    "height": self.height, "fps": self.fps, "frames": self.frames_out,
                    "passthrough": self.encoded, "codec": self.codec, "state": self.state,
                    "opens": self.opens, "reconnects": self.reconnects,
                    "failed_attempts": self.failures, "last_error": self.last_error,
                    "next_retry_s": round(self.next_retry_s, 2),
                    "lores_decoded": self.lores_decoded,
                    "skipped_before_keyframe": self.skipped_before_key}

    # ------------------------------------------------------------------ opening

    def _open(self):
        import av

        target, kwargs = open_args(self.spec)
        if self.spec.startswith("/dev/video"):
            kwargs = {**kwargs, "options": v4l2_options(self.width, self.height, self.fps,
                                                       self.v4l2_format)}
        try:
            container = av.open(target, **kwargs)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"camera source {_redact(self.spec)!r} cannot be opened: "
                              f"{_scrub(str(exc), self.spec)}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"camera source {_redact(self.spec)!r} has no video stream")
        with self._lock:
            self.opens += 1
        return container

    def _set(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def _wait_retry(self, exc: Exception) -> None:
        """Record a failure and wait the backoff (in slices, so ``close()`` cuts it short)."""
        with self._lock:
            self.failures += 1
            self.last_error = _scrub(str(exc), self.spec)
            first, longest = self._backoff
            self.next_retry_s = min(longest, first * 2 ** (self.failures - 1))
            self.state = "reconnecting"
            failures, wait = self.failures, self.next_retry_s
        if self._max_retries is not None and failures > self._max_retries:
            self._set(state="failed")
            raise SourceError(f"camera source {_redact(self.spec)!r}: giving up after "
                              f"{failures} failed attempts: {self.last_error}")
        end = self._clock.monotonic() + wait
        while not self._stop.is_set():
            left = end - self._clock.monotonic()
            if left <= 0:
                break
            self._clock.sleep(min(0.1, left))

    # ------------------------------------------------------------------ frames

    def frames(self) -> Iterator[Frame]:
        import av

        self._seq = 0
        self._origin = self._clock.monotonic()
        self._origin_utc = self._clock.utc()
        self._out_pts_next = 0
        connected_before = False
        while not self._stop.is_set():
            try:
                container = self._open()
            except SourceError as exc:
                if not self._live:
                    raise
                self._wait_retry(exc)
                continue
            delivered = 0
            try:
                stream = container.streams.video[0]
                passthrough = self._want_passthrough
                if passthrough is None:
                    passthrough = self.spec.startswith(("rtsp://", "rtsps://"))
                if passthrough and stream.codec_context.name != "h264":
                    if self._want_passthrough:
                        raise SourceError(f"passthrough needs H.264, the camera sends "
                                          f"{stream.codec_context.name}")
                    passthrough = False
                self._set(codec=stream.codec_context.name, encoded=passthrough, state="streaming")
                gen = (self._passthrough(container, stream, connected_before) if passthrough
                       else self._decode(container, stream, connected_before))
                for frame in gen:
                    if self._stop.is_set() or (self._max is not None and self._seq >= self._max):
                        return
                    if delivered == 0 and self.failures:
                        self._set(failures=0, next_retry_s=0.0)
                    delivered += 1
                    self._seq += 1
                    self._set(frames_out=self._seq)
                    yield frame
                    if self._max is not None and self._seq >= self._max:
                        return
                if self._live and not self._stop.is_set():
                    raise SourceError("stream ended")
            except (av.error.FFmpegError, SourceError) as exc:
                if not self._live:
                    raise SourceError(f"camera source {_redact(self.spec)!r} failed: {exc}") from exc
                if delivered:
                    self._set(reconnects=self.reconnects + 1)
                self._wait_retry(exc)
            finally:
                container.close()
            connected_before = connected_before or delivered > 0
            if not self._live and not self._loop:
                return
        self._set(state="closed")

    def _times(self, rel_s: float) -> tuple[float, Any]:
        """(mono, utc) of a frame ``rel_s`` seconds into this source's timeline."""
        if self._realtime:
            due = self._origin + rel_s
            if not self._live:
                wait = due - self._clock.monotonic()
                if wait > 0:
                    self._clock.sleep(wait)
            return self._clock.monotonic(), self._clock.utc()
        return self._origin + rel_s, self._origin_utc + timedelta(seconds=rel_s)

    def _decode(self, container, stream, reconnected: bool) -> Iterator[Frame]:
        stream.thread_type = "AUTO"
        period = 1.0 / self.fps
        first = True
        for vf in container.decode(stream):
            mono, utc = self._times(self._seq * period)
            frame = self._to_frame(vf, self._seq, mono, utc)
            if first and reconnected:
                frame.meta["discontinuity"] = True
            first = False
            yield frame

    def _to_frame(self, vf, seq: int, mono: float, utc) -> Frame:
        if vf.width != self.width or vf.height != self.height or vf.format.name != "yuv420p":
            vf = vf.reformat(width=self.width, height=self.height, format="yuv420p")
        main = vf.to_ndarray()
        lores = luma_downscale(main[: self.height], *self.lores_size)
        return Frame(seq=seq, mono=mono, utc=utc, width=self.width, height=self.height,
                     main=main, lores=lores)

    def _passthrough(self, container, stream, reconnected: bool) -> Iterator[Frame]:
        import av

        ctx = stream.codec_context
        ctx.thread_type = "SLICE"  # no frame-threading delay: lores of packet N from packet N
        width, height = ctx.width or self.width, ctx.height or self.height
        self._set(width=width, height=height)
        extradata = bytes(ctx.extradata or b"")
        bsf = None
        if extradata[:1] == b"\x01":  # avcC: a file's length-prefixed H.264
            from av.bitstream import BitStreamFilterContext

            bsf = BitStreamFilterContext("h264_mp4toannexb", stream)
        headers = extradata if extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")) else b""
        tb = stream.time_base or TIME_BASE
        step = round(90_000 / (float(stream.average_rate) if stream.average_rate else self.fps))
        lw, lh = self.lores_size
        lores = np.full((lh, lw), 16, np.uint8)
        fresh = False
        last_lores_t = -1e9
        cam0: int | None = None
        base = self._out_pts_next
        last_cam = None
        last_dts: int | None = None
        keyed = False
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            units = bsf.filter(packet) if bsf is not None else [packet]
            for pkt in units:
                cam = pkt.pts if pkt.pts is not None else pkt.dts
                cam = None if cam is None else round(cam * tb * 90_000)
                if cam is None:  # the first RTSP packets come before any RTCP timing
                    cam = (last_cam + step) if last_cam is not None else 0
                last_cam = cam
                if not keyed and not pkt.is_keyframe:
                    with self._lock:  # joined mid-GOP: undecodable until the next IDR
                        self.skipped_before_key += 1
                    continue
                keyed = True
                if cam0 is None:
                    cam0 = cam
                pts = base + cam - cam0
                if pkt.dts is not None:
                    dts = base + round(pkt.dts * tb * 90_000) - cam0
                else:
                    # RTSP gives no dts. Without B-frames dts = pts; with them, step along one
                    # frame at a time behind the pts, which keeps dts increasing and <= pts.
                    reorder = int(ctx.has_b_frames or 0)
                    dts = pts - reorder * step if last_dts is None else last_dts + step
                dts = min(dts, pts)
                if last_dts is not None and dts <= last_dts:
                    dts = min(pts, last_dts + 1)
                last_dts = dts
                mono, utc = self._times(pts / 90_000)
                data = bytes(pkt)
                if pkt.is_keyframe and headers and not has_sps(data):
                    # SPS/PPS only in the SDP (sprop-parameter-sets): repeat them before each
                    # IDR so every segment decodes on its own. The slices stay untouched.
                    data = headers + data
                try:
                    decoded = ctx.decode(pkt)
                except av.error.InvalidDataError:
                    decoded = []  # a damaged packet: still recorded, not analysed
                # Rate in stream time: packets arrive in bursts (start-up probing, jitter).
                t_stream = pts / 90_000
                due = (self.analysis_fps <= 0
                       or t_stream - last_lores_t >= 1.0 / self.analysis_fps - 1e-6)
                fresh = False
                if decoded and due:
                    lores = _lores_of(decoded[-1], lw, lh)
                    last_lores_t, fresh = t_stream, True
                    with self._lock:
                        self.lores_decoded += 1
                self._out_pts_next = max(self._out_pts_next, pts + step)
                frame = Frame(seq=self._seq, mono=mono, utc=utc, width=width, height=height,
                              main=None, lores=lores,
                              packet=EncodedPacket(data, pts, dts, bool(pkt.is_keyframe),
                                                   utc, mono, self._seq),
                              meta={"lores_fresh": fresh})
                if reconnected:
                    frame.meta["discontinuity"] = True
                    reconnected = False
                yield frame


def _lores_of(vf, lw: int, lh: int) -> np.ndarray:
    """Luma of a decoded frame at the lores size, reading the Y plane in place (no full-size
    conversion). Other pixel formats go through swscale to grey."""
    if vf.format.name in ("yuv420p", "yuvj420p", "nv12", "yuv422p", "yuvj422p"):
        plane = vf.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(vf.height, plane.line_size)[:, : vf.width]
        return luma_downscale(y, lw, lh)
    return vf.reformat(width=lw, height=lh, format="gray").to_ndarray()


def _redact(spec: str) -> str:
    """Hide the password of ``rtsp://user:password@host/...`` in logs and diagnostics."""
    from hw.redact import redact_url

    return redact_url(spec)


def _scrub(text: str, spec: str) -> str:
    """Replace the URL (with its password) wherever FFmpeg quoted it in an error message."""
    red = _redact(spec)
    return text if red == spec else text.replace(spec, red)
