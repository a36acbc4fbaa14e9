"""A recorded stand-in for the parts of picamera2 the CSI backend uses.

It behaves like a camera where it matters for the backend's logic and *refuses* what the real
library refuses or what would hang a real Pi, so a wrong call order fails a test:

* ``start()``/``start_encoder()``/``capture_request()`` before ``configure()``; ``configure()``
  while running; ``capture_request()`` while stopped → ``RuntimeError``;
* a request not released (the real camera stalls once its ``buffer_count`` buffers are held)
  → ``RuntimeError`` ("request leak"); ``make_array`` on a released request → ``RuntimeError``.

Each ``capture_request()`` produces the next sensor frame: a moving bright bar on a grey
ramp at the configured sizes, sensor timestamps spaced by ``FrameDurationLimits``. As on a real
Pi, the pre-callback sees the *main* buffer (through ``MappedArray``) before the encoder does;
the encoder stand-in encodes main with real libx264 through PyAV (a hardware encoder emits
the same Annex-B H.264) and calls the output's ``outputframe`` with the timestamp in µs,
``lag`` frames late (a hardware encoder's pipeline delay). Every call is appended to
``Camera.calls`` as ``(name, args)``.
"""

from __future__ import annotations

import types
from fractions import Fraction
from typing import Any, ClassVar

import av
import numpy as np


def bar_x(seq: int, width: int) -> int:
    return (seq * 8) % max(1, width - 32)


def sensor_image(seq: int, width: int, height: int) -> np.ndarray:
    """The luma the stand-in sensor sees at frame ``seq``."""
    y = np.tile(np.linspace(50, 110, width).astype(np.uint8), (height, 1))
    x = bar_x(seq, width)
    y[:, x:x + 32] = 200
    return y


class Output:
    """Base class the backend's output subclasses (picamera2.outputs.Output)."""

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        raise NotImplementedError


class _Encoder:
    kind = "?"

    def __init__(self, bitrate=None, repeat=False, iperiod=None, profile=None, **kw):
        if kw:
            raise TypeError(f"unexpected encoder arguments {sorted(kw)}")
        self.bitrate, self.repeat, self.iperiod, self.profile = bitrate, repeat, iperiod, profile
        self.ctx = None
        self.output = None
        self.lag = 0
        self.relative = True
        self.first_us: int | None = None
        self._held: list[tuple[bytes, bool, int]] = []

    def _open(self, width: int, height: int, fps: float) -> None:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, 1_000_000)
        ctx.framerate = Fraction(fps).limit_denominator(1001)
        ctx.bit_rate = self.bitrate or 1_000_000
        g = self.iperiod or 30
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                       "x264-params": f"keyint={g}:min-keyint={g}:scenecut=0"}
        ctx.open()
        self.ctx = ctx

    def _encode(self, main: np.ndarray, ts_us: int) -> None:
        # Like picamera2's encoders: stamps are µs since the first encoded frame (``relative``)
        # or, as some releases did, the absolute sensor time.
        if self.first_us is None:
            self.first_us = ts_us
        if self.relative:
            ts_us -= self.first_us
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(main), format="yuv420p")
        vf.pts = ts_us
        for p in self.ctx.encode(vf):
            self._held.append((bytes(p), bool(p.is_keyframe), int(p.pts)))
        while len(self._held) > self.lag:
            data, key, ts = self._held.pop(0)
            self.output.outputframe(data, key, ts)

    def _flush(self) -> None:
        for p in self.ctx.encode(None):
            self._held.append((bytes(p), bool(p.is_keyframe), int(p.pts)))
        for data, key, ts in self._held:
            self.output.outputframe(data, key, ts)
        self._held.clear()


class H264Encoder(_Encoder):
    kind = "hardware"


class LibavH264Encoder(_Encoder):
    kind = "libav"


class MappedArray:
    def __init__(self, request, stream: str) -> None:
        self.request, self.stream = request, stream

    def __enter__(self):
        self.request._check()
        self.array = self.request.buffers[self.stream]
        return self

    def __exit__(self, *exc):
        return False


class Request:
    def __init__(self, camera: Camera, buffers: dict[str, np.ndarray], metadata: dict) -> None:
        self.camera, self.buffers, self.metadata = camera, buffers, metadata
        self.released = False

    def _check(self) -> None:
        if self.released:
            raise RuntimeError("request used after release()")

    def get_metadata(self) -> dict:
        self._check()
        self.camera.calls.append(("get_metadata", ()))
        return dict(self.metadata)

    def make_array(self, name: str) -> np.ndarray:
        self._check()
        self.camera.calls.append(("make_array", (name,)))
        return self.buffers[name].copy()

    def release(self) -> None:
        self._check()
        self.released = True
        self.camera.held -= 1
        self.camera.calls.append(("release", ()))


class Job:
    """What ``capture_request(wait=False)`` returns; ``Camera.wait(job, timeout)`` completes it."""

    def __init__(self, camera: Camera) -> None:
        self.camera = camera


class Camera:
    """Stand-in for ``picamera2.Picamera2``."""

    instances: ClassVar[list[Camera]] = []
    #: set by a test: frames of encoder delay for the next camera made
    next_lag = 0
    #: set by a test: encoder stamps absolute sensor time instead of time since first frame
    next_absolute = False
    #: set by a test: sensor frames (by number) whose requests the app never gets (it was late)
    next_missed: ClassVar[set[int]] = set()
    #: set by a test: frame numbers at which the sensor stops delivering (wait times out)
    next_stall_at: ClassVar[set[int]] = set()

    def __init__(self, camera_num: int = 0) -> None:
        self.calls: list[tuple[str, tuple]] = [("__init__", (camera_num,))]
        self.config: dict | None = None
        self.started = False
        self.closed = False
        self.controls: dict[str, Any] = {}
        self.pre_callback = None
        self.encoder: _Encoder | None = None
        self.seq = 0
        self.held = 0
        self.sensor_ns = 1_000_000_000_000  # the kernel clock is far from zero at boot+16 min
        Camera.instances.append(self)

    def create_video_configuration(self, main=None, lores=None, controls=None, buffer_count=6, **kw):
        self.calls.append(("create_video_configuration", ()))
        return {"main": dict(main), "lores": dict(lores) if lores else None,
                "controls": dict(controls or {}), "buffer_count": buffer_count, **kw}

    def configure(self, config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if config["main"].get("format") != "YUV420" or (config["lores"] or {}).get("format") != "YUV420":
            raise RuntimeError("stand-in supports YUV420 main and lores only")
        self.calls.append(("configure", (config,)))
        self.config = config
        self.controls.update(config["controls"])

    def set_controls(self, controls: dict) -> None:
        self.calls.append(("set_controls", (dict(controls),)))
        self.controls.update(controls)

    def start_encoder(self, encoder: _Encoder, output: Output, name: str = "main") -> None:
        if self.config is None:
            raise RuntimeError("start_encoder before configure")
        if not isinstance(output, Output):
            raise TypeError("output must be a picamera2 Output")
        self.calls.append(("start_encoder", (type(encoder).__name__, name)))
        w, h = self.config[name]["size"]
        encoder.output = output
        encoder.lag = Camera.next_lag
        encoder.relative = not Camera.next_absolute
        encoder._open(w, h, 1_000_000 / self.controls["FrameDurationLimits"][0])
        self.encoder = encoder

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.calls.append(("start", ()))
        self.started = True

    def capture_request(self, wait=None) -> Request | Job:
        if wait is False:  # picamera2: a job to wait on, with a timeout
            self.calls.append(("capture_request_job", ()))
            return Job(self)
        if not self.started:
            raise RuntimeError("capture_request while the camera is stopped")
        if self.held >= self.config["buffer_count"] - 1:
            raise RuntimeError("request leak: every buffer is held, a real camera stalls here")
        self.calls.append(("capture_request", ()))
        (w, h), (lw, lh) = self.config["main"]["size"], self.config["lores"]["size"]
        y = sensor_image(self.seq, w, h)
        main = np.concatenate([y, np.full((h // 2, w), 128, np.uint8)])
        ly = y[:: h // lh, :: w // lw][:lh, :lw]
        lores = np.concatenate([ly, np.full((lh // 2, lw), 128, np.uint8)])
        self.sensor_ns += self.controls["FrameDurationLimits"][0] * 1000
        request = Request(self, {"main": main, "lores": lores},
                          {"SensorTimestamp": self.sensor_ns, "FrameDuration":
                           self.controls["FrameDurationLimits"][0]})
        if self.pre_callback is not None:
            self.pre_callback(request)
        if self.encoder is not None:
            self.encoder._encode(main, self.sensor_ns // 1000)
        self.seq += 1
        if self.seq - 1 in Camera.next_missed:  # produced and encoded, but not handed out
            return self.capture_request()
        self.held += 1
        return request

    def wait(self, job: Job, timeout: float | None = None):
        if job.camera is not self:
            raise RuntimeError("job of another camera")
        if self.seq in Camera.next_stall_at:
            self.calls.append(("wait_timeout", (timeout,)))
            raise TimeoutError
        return self.capture_request()

    def stop(self) -> None:
        self.calls.append(("stop", ()))
        self.started = False

    def stop_encoder(self) -> None:
        if self.encoder is None:
            raise RuntimeError("stop_encoder without an encoder")
        self.calls.append(("stop_encoder", ()))
        self.encoder._flush()
        self.encoder = None

    def close(self) -> None:
        if self.started:
            raise RuntimeError("close while running")
        self.calls.append(("close", ()))
        self.closed = True


def module() -> types.SimpleNamespace:
    """An object shaped like the ``picamera2`` package for the backend's ``module=``."""
    Camera.instances = []
    Camera.next_lag = 0
    Camera.next_absolute = False
    Camera.next_missed = set()
    Camera.next_stall_at = set()
    return types.SimpleNamespace(
        Picamera2=Camera, MappedArray=MappedArray,
        encoders=types.SimpleNamespace(H264Encoder=H264Encoder, LibavH264Encoder=LibavH264Encoder),
        outputs=types.SimpleNamespace(Output=Output),
    )
