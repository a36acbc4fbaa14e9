"""The frame pipeline: capture → encode → outputs, and capture → analysis.

    capture thread ──frames──► [encode queue] ──► encoder thread ──packets──► FanOut ─► recorder
                     └───────► [analysis queue] ──► analysis thread ──► analyse(frame)
                                                      (the app's hook: analyzer → node.actions)

Queues are bounded and drop the oldest frame (counted): a slow encoder or a busy detector
never stalls the camera, and the analysis queue is short on purpose (analysis wants the
newest frame, not a backlog). A camera that fails is reopened with backoff (1 s doubling to
30 s) while the fault is reported; a finite source (a file without loop, a test) ends the
pipeline cleanly: the encoder flushes and the outputs close their last segment.

Where frames were lost — the camera says so (``meta["gap"]``, ``meta["discontinuity"]``), the
source was reopened, or packets of an encoded source fell out of the encode queue — the next
packet is marked :attr:`~hw.media.EncodedPacket.discontinuity` and the recorder cuts there.

Threads: ``capture``, ``encoder``, ``analysis`` (the loops below; see ``docs/threads.md``);
``counters``, ``faults`` and the health methods are read from any thread (main loop, MQTT).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hw.camera import FrameSource, SourceError
from hw.encode.base import EncoderError, FanOut
from hw.media import Frame, StreamInfo
from node.queues import Closed, DropOldestQueue

log = logging.getLogger(__name__)


@dataclass
class Counters:
    frames_in: int = 0
    frames_encoded: int = 0
    packets_out: int = 0
    encode_errors: int = 0
    last_encode_mono: float = 0.0
    #: mean of the last lores luma plane (0-255): the day/night controller's picture reading
    luma_mean: float | None = None


@dataclass
class Faults:
    """``{area: message}`` of what is wrong now; logged once when it appears and clears."""

    items: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, key: str, message: str | None) -> None:
        with self._lock:
            if message is None:
                if self.items.pop(key, None) is not None:
                    log.info("fault cleared: %s", key)
            elif self.items.get(key) != message:
                self.items[key] = message
                log.error("fault %s: %s", key, message)

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self.items)


class Pipeline:
    """Runs the three worker threads.

    ``open_source()`` builds (or returns) the camera; ``make_encoder(frame, stream)`` returns a
    started encoder and the :class:`StreamInfo` it produces (called once, on the encoder thread,
    with the first frame); ``prepare_frame(frame)`` runs on the encoder thread before encoding
    (the on-screen text); ``analyse(frame)`` runs on the analysis thread.
    """

    def __init__(self, *, clock: Any, fanout: FanOut, open_source: Callable[[], FrameSource],
                 make_encoder: Callable[[Frame, StreamInfo], tuple[Any, StreamInfo]],
                 finite: bool, encode_queue: int, faults: Faults,
                 prepare_frame: Callable[[Frame], None] | None = None,
                 analyse: Callable[[Frame], None] | None = None, analysis_fps: float = 10.0) -> None:
        self.clock = clock
        self.fanout = fanout
        self._open_source = open_source
        self._make_encoder = make_encoder
        self._finite = finite
        self._prepare = prepare_frame
        self._analyse = analyse
        # frames closer together than this skip analysis (5 % slack for jittery timestamps)
        self._analysis_gap = 0.95 / analysis_fps
        self._last_analysed: float | None = None
        self.faults = faults
        self.counters = Counters()
        self.encode_q: DropOldestQueue[Frame] = DropOldestQueue(encode_queue)
        self.analysis_q: DropOldestQueue[Frame] = DropOldestQueue(2)
        self.source: FrameSource | None = None
        self.encoder: Any = None
        self.source_ended = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_arrival: float | None = None
        self._started_at: float | None = None
        self._prepare_failed = False

    def start(self) -> None:
        self._started_at = self.clock.monotonic()
        loops = [("capture", self._capture_loop), ("encoder", self._encode_loop)]
        if self._analyse is not None:
            loops.append(("analysis", self._analysis_loop))
        for name, target in loops:
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self.source is not None:
            self.source.close()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the workers, ``timeout`` seconds in all (not per thread)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for th in self._threads:
            th.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(th.is_alive() for th in self._threads)

    def dead_threads(self) -> list[str]:
        """Workers that ended although nothing asked them to (a bug or an unexpected error)."""
        if self._stop.is_set() or self.source_ended:
            return []
        return [th.name for th in self._threads if not th.is_alive()]

    def stalled_for(self, now: float, *, since_start: bool = False) -> float:
        """Seconds since the camera delivered a frame, on the node's monotonic clock; 0 after a
        finite source ended. Before the first frame: 0, or with ``since_start`` the time since
        the pipeline started (a camera that never delivers is a fault, but restarting the node
        for it would only loop)."""
        if self.source_ended:
            return 0.0
        if self._last_arrival is None:
            return max(0.0, now - self._started_at) if since_start and self._started_at is not None else 0.0
        return max(0.0, now - self._last_arrival)

    def alive(self) -> bool:
        """Every worker still running, or ended because a finite source ran out."""
        if self.source_ended:
            return True
        return all(th.is_alive() for th in self._threads)

    def stuck(self, now: float, limit_s: float = 30.0) -> bool:
        """Frames waiting but the encoder has not finished one for ``limit_s``."""
        c = self.counters
        return bool(len(self.encode_q) and c.last_encode_mono and now - c.last_encode_mono > limit_s)

    # -- threads -----------------------------------------------------------------
    def _capture_loop(self) -> None:
        backoff = 1.0
        reopened = False
        try:
            while not self._stop.is_set():
                try:
                    self.source = self._open_source()
                    for frame in self.source.frames():
                        if reopened:  # a new stream: the recorder cuts before it
                            frame.meta["discontinuity"], reopened = True, False
                        c = self.counters
                        c.frames_in += 1
                        self._last_arrival = self.clock.monotonic()
                        self.encode_q.put(frame)
                        if self._analyse is not None and (
                                self._last_analysed is None
                                or frame.mono - self._last_analysed >= self._analysis_gap
                                or frame.mono < self._last_analysed):
                            self._last_analysed = frame.mono
                            self.analysis_q.put(frame)
                        if backoff != 1.0:
                            backoff = 1.0
                            self.faults.set("camera", None)
                        if self._stop.is_set():
                            break
                    else:
                        if self._finite:
                            self.source_ended = True
                            log.info("source ended after %d frames", self.counters.frames_in)
                            # said in the heartbeat: a node with fps 0 must not look healthy
                            self.faults.set("camera", f"source ended after {self.counters.frames_in}"
                                            " frames (camera.loop = false): nothing more is recorded")
                            return
                        self.faults.set("camera", "camera stream ended; reopening")
                except SourceError as exc:
                    self.faults.set("camera", str(exc))
                except Exception as exc:  # a backend bug: report, back off, reopen — never die
                    log.exception("capture failed")
                    self.faults.set("camera", f"{type(exc).__name__}: {exc}")
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
                reopened = self.counters.frames_in > 0  # (nothing to cut before a first frame)
        finally:
            self.encode_q.close()
            self.analysis_q.close()

    def _encode_loop(self) -> None:
        c = self.counters
        cut = False  # the next packet out follows a hole: mark it, the recorder cuts there
        try:
            while True:
                try:
                    frame, dropped_before = self.encode_q.get_marked(timeout=1.0)
                except Closed:
                    break
                if frame is None:
                    continue
                if frame.meta.get("gap") or frame.meta.get("discontinuity") or (
                        dropped_before and frame.packet is not None):
                    # The camera lost frames, its stream restarted, or packets of an encoded
                    # source were dropped here (a re-encoded source just encodes fewer frames).
                    cut = True
                    if frame.main is not None:  # an encoder that can starts a GOP here: no loss
                        frame.meta["force_keyframe"] = True
                try:
                    if self.encoder is None:
                        src = self.source
                        fps = src.fps if src is not None else 15.0
                        self.encoder, info = self._make_encoder(
                            frame, StreamInfo("h264", frame.width, frame.height, fps))
                        self.fanout.start(info)
                    if self._prepare is not None:  # also encoded frames (live taps their lores)
                        self._prepare_guarded(frame)
                    for pkt in self.encoder.encode(frame):
                        if cut:
                            pkt, cut = dataclasses.replace(pkt, discontinuity=True), False
                        self.fanout.write(pkt)
                        c.packets_out += 1
                    c.frames_encoded += 1
                    c.last_encode_mono = self.clock.monotonic()
                    if c.encode_errors:
                        self.faults.set("encoder", None)
                except Exception as exc:  # EncoderError, or a bug in a frame hook: keep going
                    if not isinstance(exc, EncoderError):
                        log.exception("encoding a frame failed")
                    c.encode_errors += 1
                    self.faults.set("encoder", f"{exc}" if isinstance(exc, EncoderError)
                                    else f"{type(exc).__name__}: {exc}")
                    if self.encoder is None and self._stop.wait(5.0):
                        break
            if self.encoder is not None:
                for pkt in self.encoder.flush():
                    self.fanout.write(pkt)
        finally:
            self.fanout.stop()
            if self.encoder is not None:
                self.encoder.close()

    def _prepare_guarded(self, frame: Frame) -> None:
        """The on-screen text: if it fails, the frame is recorded without it (and said once)."""
        assert self._prepare is not None
        try:
            self._prepare(frame)
            if self._prepare_failed:
                self._prepare_failed = False
                self.faults.set("overlay", None)
        except Exception as exc:
            if not self._prepare_failed:
                log.exception("on-screen text failed; recording without it")
                self._prepare_failed = True
            self.faults.set("overlay", f"{type(exc).__name__}: {exc}")

    def _analysis_loop(self) -> None:
        assert self._analyse is not None
        c = self.counters
        while True:
            try:
                frame = self.analysis_q.get(timeout=1.0)
            except Closed:
                return
            if frame is None:
                continue
            c.luma_mean = float(frame.lores.mean())
            try:
                self._analyse(frame)
                if "analysis" in self.faults.items:
                    self.faults.set("analysis", None)
            except Exception as exc:  # analysis must never take recording down
                log.exception("analysis failed")
                self.faults.set("analysis", f"{type(exc).__name__}: {exc}")
