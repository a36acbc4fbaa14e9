"""Composition root: config → probe → build → start → run → stop.

The only module that knows every piece. It builds the camera, the encoder and its outputs,
the MQTT link and the worker threads, and it owns the shutdown order:

    capture thread ──frames──► [encode queue] ──► encoder thread ──packets──► outputs (recorder…)
                     └───────► [analysis queue] ──► analysis thread (vision)
    main thread: heartbeats, systemd watchdog, fault reporting

Queues are bounded and drop the oldest frame (counted), so a slow consumer never stalls the
camera. A camera that fails is reopened with backoff while the node keeps reporting; a broker
that is down never stops recording.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.camera import Frame, FrameSource, SourceError, open_source
from hw.encode.base import EncoderError, FanOut, StreamInfo
from node import __version__, health
from node.clock import Clock, SystemClock
from node.config import Config
from node.link import topics as t
from node.link.mqtt import MqttLink
from node.queues import Closed, DropOldestQueue
from node.record.segmenter import SegmentWriter
from node.sdnotify import Notifier

log = logging.getLogger(__name__)


@dataclass
class Counters:
    frames_in: int = 0
    frames_encoded: int = 0
    packets_out: int = 0
    encode_errors: int = 0
    last_encode_mono: float = 0.0
    faults: dict[str, str] = field(default_factory=dict)


class Node:
    """One running camera node. ``start()`` returns once threads run; ``stop()`` is idempotent.

    ``source`` may be given (tests, benchmarks); otherwise it is built from ``cfg.camera``.
    """

    def __init__(self, cfg: Config, *, clock: Clock | None = None, source: FrameSource | None = None,
                 notifier: Notifier | None = None, encoder=None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self._given_source = source
        self.source: FrameSource | None = source
        self.counters = Counters()
        self._stop = threading.Event()
        self._started_mono = self.clock.monotonic()
        cam = cfg.camera
        self.encode_q: DropOldestQueue[Frame] = DropOldestQueue(cam.queue_frames)
        self.fanout = FanOut()
        self.recorder = SegmentWriter(Path(cfg.storage.path), cfg.storage.segment_s, self.clock)
        self.fanout.add(self.recorder)
        self.encoder = encoder
        self.link = MqttLink.from_config(cfg.mqtt, cfg.node.id, self.clock)
        self._threads: list[threading.Thread] = []
        self._rates = _Rates()
        self._source_ended = False

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        log.info("camnode %s starting: node %s, source %s", __version__, self.cfg.node.id,
                 self.cfg.camera.source)
        Path(self.cfg.storage.path).mkdir(parents=True, exist_ok=True)
        self.link.start()
        for name, target in (("capture", self._capture_loop), ("encoder", self._encode_loop)):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        self.notifier.ready(f"recording {self.cfg.camera.source}")

    def stop(self) -> None:
        if self._stop.is_set():
            return
        log.info("stopping")
        self.notifier.stopping()
        self._stop.set()
        if self.source is not None:
            self.source.close()
        for th in self._threads:
            th.join(timeout=10)
        self.link.close()
        log.info("stopped")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker threads to end (a finite source ran out); True if they did."""
        for th in self._threads:
            th.join(timeout)
        return not any(th.is_alive() for th in self._threads)

    def run(self, stop: threading.Event) -> None:
        """Main thread: heartbeats and watchdog until ``stop`` is set, then a clean stop."""
        self.start()
        period = self.cfg.mqtt.heartbeat_s
        next_beat = self.clock.monotonic() + min(1.0, period)
        tick = min(1.0, period / 2, (self.notifier.watchdog_s or 2.0) / 2)
        try:
            while not stop.wait(tick):
                now = self.clock.monotonic()
                if self.healthy():
                    self.notifier.watchdog()
                if now >= next_beat:
                    self.publish_heartbeat()
                    next_beat = now + period
        finally:
            self.stop()

    # -- state -------------------------------------------------------------------
    def healthy(self) -> bool:
        """Worker threads alive and the encoder not stuck with frames waiting (for the watchdog)."""
        if any(not th.is_alive() for th in self._threads) and not self._stop.is_set():
            return self._finished_cleanly()
        stuck = (len(self.encode_q) > 0 and self.counters.last_encode_mono
                 and self.clock.monotonic() - self.counters.last_encode_mono > 30)
        return not stuck

    def _finished_cleanly(self) -> bool:
        return self._source_ended

    def heartbeat(self) -> dict[str, Any]:
        c = self.counters
        now = self.clock.monotonic()
        fps_in, fps_out = self._rates.update(now, c.frames_in, c.frames_encoded)
        return {
            "node_id": self.cfg.node.id,
            "version": __version__,
            "uptime_s": round(now - self._started_mono, 1),
            "utc": t.iso(self.clock.utc()),
            "clock_synced": self.clock.synced(),
            "fps_in": fps_in,
            "fps_out": fps_out,
            "frames_in": c.frames_in,
            "frames_dropped": self.encode_q.dropped,
            "encoder": getattr(self.encoder, "name", None),
            "disk_free_mb": health.disk_free_mb(self.cfg.storage.path),
            "cpu_load": health.cpu_load(),
            "temperatures_c": health.thermal_zones(),
            "memory": health.memory(),
            "recorder": self.recorder.health(),
            "link": self.link.health(),
            "faults": dict(c.faults),
        }

    def publish_heartbeat(self) -> dict[str, Any]:
        hb = self.heartbeat()
        self.link.publish(self.link.topics.heartbeat, hb, qos=0)
        return hb

    def _fault(self, key: str, message: str | None) -> None:
        if message is None:
            if self.counters.faults.pop(key, None) is not None:
                log.info("fault cleared: %s", key)
        elif self.counters.faults.get(key) != message:
            self.counters.faults[key] = message
            log.error("fault %s: %s", key, message)

    # -- threads -----------------------------------------------------------------
    def _open_source(self) -> FrameSource:
        if self._given_source is not None:
            return self._given_source
        cam = self.cfg.camera
        return open_source(cam.source, cam.width, cam.height, cam.fps,
                           (cam.lores_width, cam.lores_height), self.clock, realtime=cam.realtime,
                           loop=cam.loop)

    def _capture_loop(self) -> None:
        backoff = 1.0
        try:
            while not self._stop.is_set():
                try:
                    self.source = self._open_source()
                    for frame in self.source.frames():
                        self.counters.frames_in += 1
                        self.encode_q.put(frame)
                        if backoff != 1.0 or "camera" in self.counters.faults:
                            backoff = 1.0
                            self._fault("camera", None)
                        if self._stop.is_set():
                            break
                    else:
                        if self._given_source is not None or not self.cfg.camera.loop:
                            self._source_ended = True
                            log.info("source ended after %d frames", self.counters.frames_in)
                            return
                except SourceError as exc:
                    self._fault("camera", str(exc))
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
        finally:
            self.encode_q.close()

    def _encode_loop(self) -> None:
        started = False
        try:
            while True:
                try:
                    frame = self.encode_q.get(timeout=1.0)
                except Closed:
                    break
                if frame is None:
                    continue
                if not started:
                    self._start_encoder(frame)
                    started = True
                try:
                    for pkt in self.encoder.encode(frame):
                        self.fanout.write(pkt)
                        self.counters.packets_out += 1
                    self.counters.frames_encoded += 1
                    self.counters.last_encode_mono = self.clock.monotonic()
                    if "encoder" in self.counters.faults:
                        self._fault("encoder", None)
                except EncoderError as exc:
                    self.counters.encode_errors += 1
                    self._fault("encoder", str(exc))
            if started:
                for pkt in self.encoder.flush():
                    self.fanout.write(pkt)
        finally:
            self.fanout.stop()
            if self.encoder is not None:
                self.encoder.close()

    def _start_encoder(self, frame: Frame) -> None:
        src = self.source
        fps = src.fps if src is not None else self.cfg.camera.fps
        stream = StreamInfo("h264", frame.width, frame.height, fps)
        if self.encoder is None:
            if frame.packet is not None:
                from hw.encode.passthrough import PassthroughEncoder

                self.encoder = PassthroughEncoder()
            else:
                from hw.encode.libav import LibavEncoder

                enc = self.cfg.encoder
                self.encoder = LibavEncoder(enc.bitrate_kbps, enc.gop_s, preset=enc.preset)
        info = self.encoder.start(stream)
        log.info("encoder %s: %dx%d @ %.2f fps", self.encoder.name, info.width, info.height, info.fps)
        self.fanout.start(info)


class _Rates:
    """fps over the interval between two heartbeats."""

    def __init__(self) -> None:
        self._last: tuple[float, int, int] | None = None

    def update(self, now: float, n_in: int, n_out: int) -> tuple[float, float]:
        last, self._last = self._last, (now, n_in, n_out)
        if last is None or now <= last[0]:
            return 0.0, 0.0
        dt = now - last[0]
        return round((n_in - last[1]) / dt, 2), round((n_out - last[2]) / dt, 2)


