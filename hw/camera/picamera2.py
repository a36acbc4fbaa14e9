"""CSI camera on a Raspberry Pi through picamera2 (``camera.source = "picamera2"`` or ``"csi"``).

One camera configuration, two streams, as the Pi's ISP delivers them:

* **main** (configured size and fps, YUV420) goes to picamera2's H.264 encoder — the VideoCore
  hardware encoder (``H264Encoder``) on boards that have one (Pi 4, 3, Zero 2 W), the libav
  software encoder (``LibavH264Encoder``) on a Pi 5, which has none. Before encoding, the
  on-screen text is burned in by the request's *pre-callback* (the only place it can go on this
  path: the node never sees the main pixels). The encoder hands Annex-B packets with the
  sensor timestamp to an output of ours, which queues them.
* **lores** (small YUV420) is captured on the capture thread; its Y plane is the analysis image.

:meth:`frames` pairs each encoded packet with the lores image of the same sensor timestamp
(or the newest older one, when capture fell behind) and yields a :class:`Frame` with
``main=None`` and ``packet`` set: the node records the packets as they are (passthrough).

Timestamps: ``SensorTimestamp`` (ns, the kernel's monotonic/boottime clock) is mapped onto the
injected clock's monotonic timeline by one offset taken at the first frame, so ``mono`` keeps
the sensor's exact frame spacing. Assumes the two clocks run at the same rate (both are the
kernel's clock; they differ only across suspend, which a node never does).

Day/night: :meth:`apply_tuning` sets colour/mono, AWB and the exposure limit through
``set_controls`` (queued by picamera2 for the next request; callable from any thread).

The ``picamera2`` import is lazy (it only exists on Raspberry Pi OS); tests pass a recorded
stand-in as ``module``. Thread: ``frames()`` on the capture thread; the pre-callback and the
output run on picamera2's threads and only touch the overlay and a locked queue; ``close()``,
``describe()`` and ``apply_tuning()`` from any thread.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hw.camera.base import SourceError
from hw.encode.rate import RateSettings
from hw.media import EncodedPacket, Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraTuning:
    """What day/night changes on the camera.

    ``mono``: drop colour (under IR light colours are false and AWB drifts purple).
    ``max_exposure_us``: longest exposure allowed (longer = brighter at night but more motion
    blur and a lower frame rate); ``None`` keeps exposure within one frame period.
    ``awb``: ``"auto"`` or ``"off"`` (fixed neutral gains, right under IR).
    """

    mono: bool = False
    max_exposure_us: int | None = None
    awb: str = "auto"

    @classmethod
    def day(cls) -> CameraTuning:
        return cls()

    @classmethod
    def night(cls, max_exposure_us: int = 66_000) -> CameraTuning:
        return cls(mono=True, max_exposure_us=max_exposure_us, awb="off")


class Picamera2Source:
    """A :class:`~hw.camera.base.FrameSource` over picamera2 (see the module docstring).

    ``hardware_encoder``: ``True`` on VC4 boards (Pi 4 and older), ``False`` on a Pi 5
    (``PlatformInfo.hardware_h264``). ``overlay``: an object with
    ``apply(main, width, height, utc, synced)`` (:class:`hw.overlay.TextOverlay`), or None.
    ``max_pending``: encoded packets kept while the capture thread is late; beyond it the oldest
    are dropped, counted, and the next frame carries ``meta["gap"] = True``.
    ``frame_timeout_s``: no frame for this long → :class:`SourceError` (the node reopens the
    camera with backoff).
    """

    encoded = True

    def __init__(self, width: int, height: int, fps: float, lores: tuple[int, int], clock, *,
                 bitrate_kbps: int = 1200, gop_s: float = 2.0, profile: str = "high",
                 hardware_encoder: bool = True, overlay: Any = None, camera_num: int = 0,
                 tuning: CameraTuning | None = None, module: Any = None,
                 max_frames: int | None = None, max_pending: int = 120,
                 night_max_exposure_us: int = 66_000, frame_timeout_s: float = 5.0,
                 rate: RateSettings | None = None) -> None:
        self.name = f"picamera2:{camera_num}"
        self.width, self.height, self.fps = width, height, fps
        self.lores_size = lores
        self._clock = clock
        self.bitrate_kbps, self.gop_s, self.profile = bitrate_kbps, gop_s, profile
        self.hardware_encoder = hardware_encoder
        self.overlay = overlay
        self.camera_num = camera_num
        self.tuning = tuning or CameraTuning.day()
        self.night_max_exposure_us = night_max_exposure_us
        self.frame_timeout_s = frame_timeout_s
        self._job_api = True
        self._module = module
        self._max = max_frames
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._packets: collections.deque[tuple[bytes, bool, int]] = collections.deque()
        self._max_pending = max_pending
        self._have_packet = threading.Event()
        self._gap = False
        self._cam: Any = None
        self._offset: float | None = None
        #: sensor time (µs) of the first frame the encoder saw; picamera2's encoders stamp
        #: packets relative to it (older releases: absolute), see :meth:`_sensor_us`
        self._first_sensor_us: int | None = None
        self._relative_ts: bool | None = None
        self.frames_out = 0
        self.dropped_packets = 0
        self.overlay_errors = 0
        self.encoder_name = ""
        self._pending_rate: RateSettings | None = None
        self.encoder_swaps = 0
        self.state = "idle"
        if rate is not None:  # the storage budget's settings: bitrate and intra period
            self.set_rate(rate)
        self.last_error = ""

    # ------------------------------------------------------------------ picamera2 glue

    def _import(self) -> Any:
        if self._module is not None:
            return self._module
        try:
            import picamera2
            import picamera2.encoders
            import picamera2.outputs
        except ImportError as exc:
            raise SourceError(
                "camera.source 'picamera2' needs the picamera2 library (Raspberry Pi OS: "
                "apt install python3-picamera2, and a venv made with --system-site-packages)"
            ) from exc
        return picamera2

    @property
    def frame_us(self) -> int:
        return round(1_000_000 / self.fps)

    def _controls(self, tuning: CameraTuning) -> dict[str, Any]:
        """libcamera controls for ``tuning`` at this frame rate."""
        longest = max(self.frame_us, tuning.max_exposure_us or self.frame_us)
        controls: dict[str, Any] = {
            "FrameDurationLimits": (self.frame_us, longest),
            "AeEnable": True,
            "Saturation": 0.0 if tuning.mono else 1.0,
            "AwbEnable": tuning.awb == "auto",
        }
        if tuning.awb != "auto":
            controls["ColourGains"] = (1.0, 1.0)
        return controls

    def set_rate(self, rate: RateSettings) -> None:
        """The storage budget's settings: picamera2's encoders take a bitrate and an intra
        period (no CRF). They are fixed while an encoder runs, so while streaming the capture
        thread swaps the encoder (``stop_encoder`` flushes the old one's last packets, a new one
        starts with a keyframe); timestamps stay on the sensor's clock. Any thread."""
        if self._cam is None:
            self.bitrate_kbps, self.gop_s = rate.bitrate_kbps, rate.gop_s
        else:
            self._pending_rate = rate

    def _swap_encoder(self) -> None:
        """Capture thread: apply a pending :meth:`set_rate` to the running camera."""
        rate, self._pending_rate = self._pending_rate, None
        if rate is None or self._cam is None:
            return
        self.bitrate_kbps, self.gop_s = rate.bitrate_kbps, rate.gop_s
        self._cam.stop_encoder()  # its last packets are pushed (converted) before it returns
        self._first_sensor_us = None  # the new encoder stamps from its own first frame
        self._cam.start_encoder(self._make_encoder(self._pc2), self._make_output(self._pc2),
                                name="main")
        self.encoder_swaps += 1

    def _make_encoder(self, pc2: Any) -> Any:
        enc_mod = pc2.encoders
        iperiod = max(1, round(self.gop_s * self.fps))
        kwargs = {"bitrate": self.bitrate_kbps * 1000, "repeat": True, "iperiod": iperiod}
        if self.hardware_encoder:
            cls, self.encoder_name = enc_mod.H264Encoder, "H264Encoder (VideoCore hardware)"
        else:
            cls, self.encoder_name = enc_mod.LibavH264Encoder, "LibavH264Encoder (software)"
        try:
            return cls(profile=self.profile, **kwargs)
        except TypeError:  # an older picamera2 without the profile argument
            return cls(**kwargs)

    def _make_output(self, pc2: Any) -> Any:
        source = self

        class _QueueOutput(pc2.outputs.Output):
            """Receives each encoded frame on picamera2's encoder thread; only queues it."""

            def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
                if audio:
                    return
                source._push(bytes(frame), bool(keyframe), int(timestamp or 0))

        return _QueueOutput()

    def _push(self, data: bytes, keyframe: bool, timestamp_us: int) -> None:
        # to sensor time now, while this encoder's origin is current (an encoder swap resets it)
        ts = self._sensor_us(timestamp_us)
        with self._lock:
            self._packets.append((data, keyframe, ts))
            while len(self._packets) > self._max_pending:
                self._packets.popleft()
                self.dropped_packets += 1
                self._gap = True
        self._have_packet.set()

    def _stamp(self, request: Any) -> None:
        """picamera2 pre-callback (every frame, before the encoder sees it): note the first
        sensor timestamp, burn the text into main. Never raises into picamera2."""
        if self._first_sensor_us is None:
            try:
                self._first_sensor_us = int(request.get_metadata()["SensorTimestamp"]) // 1000
            except Exception:
                log.debug("no SensorTimestamp in the first request", exc_info=True)
        if self.overlay is None:
            return
        try:
            with self._pc2.MappedArray(request, "main") as m:
                self.overlay.apply(m.array, self.width, self.height, self._clock.utc(),
                                   self._clock.synced())
        except Exception:
            self.overlay_errors += 1
            if self.overlay_errors == 1:
                log.exception("overlay failed (further failures counted only)")

    # ------------------------------------------------------------------ FrameSource

    def _open(self) -> None:
        pc2 = self._pc2 = self._import()
        lw, lh = self.lores_size
        try:
            cam = pc2.Picamera2(self.camera_num)
        except Exception as exc:
            raise SourceError(f"CSI camera {self.camera_num} cannot be opened: {exc}") from exc
        self._cam = cam
        config = cam.create_video_configuration(
            main={"size": (self.width, self.height), "format": "YUV420"},
            lores={"size": (lw, lh), "format": "YUV420"},
            controls=self._controls(self.tuning),
            buffer_count=6,
        )
        cam.configure(config)
        cam.pre_callback = self._stamp  # always: it also records the first sensor timestamp
        encoder = self._make_encoder(pc2)
        cam.start_encoder(encoder, self._make_output(pc2), name="main")
        cam.start()
        self.state = "streaming"

    def frames(self) -> Iterator[Frame]:
        self._gap = False
        self._open()
        cam = self._cam
        lores_by_ts: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        lw, lh = self.lores_size
        seq = 0
        try:
            while not self._stop.is_set():
                if self._pending_rate is not None:
                    self._swap_encoder()
                request = self._next_request(cam)
                try:
                    ts_ns = int(request.get_metadata()["SensorTimestamp"])
                    yuv = request.make_array("lores")
                finally:
                    request.release()
                # the whole YUV420 lores image: its Y plane for analysis, all of it for the live
                # sub-stream (usable as is only when the row stride is the width)
                lores_by_ts[ts_ns // 1000] = np.ascontiguousarray(
                    yuv[: lh * 3 // 2] if yuv.shape[1] == lw else yuv[:lh, :lw])
                while len(lores_by_ts) > 16:
                    lores_by_ts.popitem(last=False)
                for frame in self._drain(lores_by_ts, seq):
                    seq += 1
                    yield frame
                    if self._max is not None and seq >= self._max:
                        return
        finally:
            self._shutdown()
        # Packets still queued when capture stopped are part of the last GOP: deliver them.
        for frame in self._drain(lores_by_ts, seq):
            seq += 1
            yield frame

    def _next_request(self, cam: Any) -> Any:
        """The next completed request, waiting at most ``frame_timeout_s``.

        A CSI camera can stall (a loose ribbon cable, the frontend timeout libcamera logs):
        without a timeout the capture thread would block forever. picamera2 returns a job for
        ``capture_request(wait=False)`` and ``wait(job, timeout)`` raises ``TimeoutError``; a
        release without that API is waited on without a timeout (the systemd watchdog is the
        backstop then).
        """
        if self._job_api:
            try:
                job = cam.capture_request(wait=False)
                return cam.wait(job, timeout=self.frame_timeout_s)
            except TimeoutError:
                self.last_error = (f"CSI camera {self.camera_num} stalled: no frame for "
                                   f"{self.frame_timeout_s:g} s")
                raise SourceError(self.last_error) from None
            except (TypeError, AttributeError):
                log.warning("picamera2 without capture jobs: capture has no timeout")
                self._job_api = False
        return cam.capture_request()

    def _drain(self, lores_by_ts: collections.OrderedDict, seq: int) -> Iterator[Frame]:
        while True:
            with self._lock:
                if not self._packets:
                    self._have_packet.clear()
                    return
                data, keyframe, ts_us = self._packets.popleft()
                gap, self._gap = self._gap, False
            lores = lores_by_ts.get(ts_us)
            exact = lores is not None
            if lores is None:
                older = [t for t in lores_by_ts if t <= ts_us]
                key = older[-1] if older else next(iter(lores_by_ts), None)
                lores = lores_by_ts[key] if key is not None else np.full(
                    (self.lores_size[1], self.lores_size[0]), 16, np.uint8)
            yuv = lores if lores.shape[0] > self.lores_size[1] else None
            lores = lores[: self.lores_size[1]]
            sensor_s = ts_us / 1_000_000
            if self._offset is None:
                self._offset = self._clock.monotonic() - sensor_s
            mono = sensor_s + self._offset
            utc = self._clock.utc()
            pts = round(sensor_s * 90_000)
            packet = EncodedPacket(data, pts, pts, keyframe, utc, mono, seq)
            meta: dict[str, object] = {"lores_fresh": exact, "sensor_timestamp_us": ts_us}
            if yuv is not None:
                meta["lores_yuv"] = yuv  # yuv420p, lores size: the live sub-stream's pixels
            if gap:
                meta["gap"] = True
            self.frames_out = seq + 1
            yield Frame(seq=seq, mono=mono, utc=utc, width=self.width, height=self.height,
                        main=None, lores=lores, packet=packet, meta=meta)
            seq += 1

    def _sensor_us(self, enc_ts: int) -> int:
        """The sensor timestamp (µs) of a packet stamped ``enc_ts`` by the encoder.

        picamera2's encoders give µs since the first encoded frame; some releases gave the
        absolute sensor time. Decided once, at the first packet: a stamp within 10 s of the
        first frame's sensor time is absolute, anything else is relative to it.
        """
        first = self._first_sensor_us
        if first is None:
            return enc_ts
        if self._relative_ts is None:
            self._relative_ts = abs(enc_ts - first) > 10_000_000
        return enc_ts + first if self._relative_ts else enc_ts

    def _shutdown(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        for step in ("stop", "stop_encoder", "close"):
            try:
                getattr(cam, step)()
            except Exception:
                log.exception("picamera2 %s failed", step)
        self.state = "closed"

    def close(self) -> None:
        self._stop.set()

    def apply_tuning(self, tuning: CameraTuning) -> None:
        """Switch colour/mono, AWB and the exposure limit (day/night). Any thread."""
        self.tuning = tuning
        cam = self._cam
        if cam is not None:
            cam.set_controls(self._controls(tuning))

    def set_night(self, night: bool) -> None:
        """Day/night hook of ``node.daynight``: mono, fixed AWB and the night exposure limit."""
        self.apply_tuning(CameraTuning.night(self.night_max_exposure_us) if night
                          else CameraTuning.day())

    def describe(self) -> dict[str, object]:
        with self._lock:
            pending = len(self._packets)
        return {"backend": "picamera2", "camera": self.camera_num, "width": self.width,
                "height": self.height, "fps": self.fps, "lores": list(self.lores_size),
                "encoder": self.encoder_name, "frames": self.frames_out, "state": self.state,
                "pending_packets": pending, "dropped_packets": self.dropped_packets,
                "overlay_errors": self.overlay_errors, "mono": self.tuning.mono,
                "last_error": self.last_error}
