"""Composition root: config → probe → build → start → run → stop.

The only module that knows every piece. It probes the board, builds the GPIO devices, the
camera, the encoder choice, the recorder, the analyzer, the day/night controller, the MQTT
link and its commands, hands each part the others it uses, and owns the start and the
shutdown order: camera stops → encoder flushes → last segment closed → events ended →
GPIO left safe (IR off, filter to day) → ``offline`` published.

What runs is elsewhere: the frame threads in :mod:`node.pipeline`, the main thread's loop in
:mod:`node.mainloop`, event actions in :mod:`node.actions`, commands in :mod:`node.commands`,
diagnostics in :mod:`node.diagnostics` (every thread: ``docs/threads.md``).

Nothing here runs at import time; ``Node.start()`` does the probing.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from hw.camera import FrameSource, open_source
from hw.camera.credentials import source_spec
from hw.encode.base import FanOut
from hw.media import Frame, StreamInfo
from hw.redact import redact_url
from node import __version__
from node.actions import ActionRouter
from node.clock import Clock, SystemClock
from node.commands import CommandParts, register_node_commands
from node.config import Config
from node.daynight import DayNightController, policy_from_config
from node.diagnostics import Diagnostics
from node.events import EventRules, Rules, close_interrupted
from node.link.mqtt import MqttLink
from node.link.outbox import Outbox
from node.link.router import CommandError, CommandRouter, expect_keys
from node.live.manager import LiveManager
from node.live.usage import DataUsage
from node.mainloop import MainLoop, healthy
from node.open_events import OpenEvents
from node.pipeline import Faults, Pipeline
from node.record.recorder import build_recorder
from node.sdnotify import Notifier

log = logging.getLogger(__name__)


class Node:
    """One running camera node. ``start()`` returns once threads run; ``stop()`` is idempotent.

    Test and benchmark seams: ``source`` (a ready FrameSource), ``encoder`` (a ready, unstarted
    encoder), ``devices`` (GPIO devices on a mock factory), ``detector`` (a loaded model to
    share), ``platform`` (a probe result, e.g. from a fixture tree).
    """

    def __init__(self, cfg: Config, *, clock: Clock | None = None, source: FrameSource | None = None,
                 notifier: Notifier | None = None, encoder: Any = None, devices: Any = None,
                 detector: Any = None, platform: Any = None, analysis: bool = True,
                 base_dir: str | None = None, free_fn: Any = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.faults = Faults()
        self._given_source = source
        self._given_encoder = encoder
        self._detector = detector
        self._analysis_enabled = analysis
        self._base_dir = base_dir
        self.platform = platform
        self.devices = devices
        self.encoder_report: Any = None
        self.analyzer: Any = None
        self.overlay: Any = None
        self._stopped = threading.Event()
        self._started_mono = self.clock.monotonic()
        try:
            self.outbox: Outbox | None = Outbox(
                Path(cfg.storage.path) / "outbox.sqlite", max_rows=cfg.mqtt.outbox_max_rows,
                max_bytes=int(cfg.mqtt.outbox_max_mb * 1e6), max_age_s=cfg.mqtt.outbox_max_age_h * 3600,
                clock=self.clock, lost_topic=f"{cfg.mqtt.topic_prefix}/{cfg.node.id}/lost")
        except (sqlite3.Error, OSError) as exc:  # events then go out in memory only; said so
            self.outbox = None
            self.faults.set("outbox", f"durable outbox unavailable: {exc}")
        self.link = MqttLink.from_config(cfg.mqtt, cfg.node.id, self.clock, on_command=self._on_command,
                                         outbox=self.outbox)
        self.commands = CommandRouter(lambda topic, payload: self.link.publish(topic, payload, qos=1),
                                      self.link.topics, self.clock, faults=self.faults)
        self.recorder = build_recorder(cfg, self.clock, **({"free_fn": free_fn} if free_fn else {}))
        #: the storage budget (None: budget.mode "fixed", or a stream the node does not encode)
        self.budget: Any = None
        self._tier_events: set[str] = set()  # object events open now (the event tier)
        try:
            self.open_events: OpenEvents | None = OpenEvents(Path(cfg.storage.path) / "events-open.sqlite")
        except (sqlite3.Error, OSError) as exc:  # events still go out; a power cut leaves them open
            self.open_events = None
            self.faults.set("events", f"open-event record unavailable: {exc}")
        self.actions = ActionRouter(self.recorder, self.link, self.faults, self.open_events,
                                    on_protect=self._event_tier)
        self.fanout = FanOut()
        self.fanout.add(self.recorder)
        self.live = LiveManager(cfg.live, cfg.node.id, self.clock,
                                DataUsage(Path(cfg.storage.path) / "live-usage.json", self.clock),
                                encoder_candidates=list(cfg.encoder.candidates) or None)
        self.fanout.add(self.live.tap)
        self.daynight = DayNightController(policy_from_config(cfg.daynight), self.clock,
                                           override_max_s=cfg.daynight.override_max_min * 60)
        self.pipeline = Pipeline(
            clock=self.clock, fanout=self.fanout, open_source=self._open_source,
            make_encoder=self._make_encoder, finite=source is not None or not cfg.camera.loop,
            encode_queue=cfg.camera.queue_frames, faults=self.faults,
            prepare_frame=self._stamp, analyse=self._analyse if analysis else None,
            analysis_fps=cfg.motion.fps)
        self.diagnostics = self._diagnostics()  # rebuilt by start() with the parts it builds

    def _diagnostics(self) -> Diagnostics:
        return Diagnostics(cfg=self.cfg, clock=self.clock, started_mono=self._started_mono,
                           faults=self.faults, pipeline=self.pipeline, recorder=self.recorder,
                           daynight=self.daynight, link=self.link, router=self.commands,
                           platform=self.platform, devices=self.devices, analyzer=self.analyzer,
                           encoder_report=lambda: self.encoder_report, live=self.live,
                           budget=lambda: self.budget)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        log.info("camnode %s starting: node %s, source %s", __version__, cfg.node.id,
                 redact_url(cfg.camera.source))
        self._remove_stale_exports()
        self._probe_platform()
        self._build_devices()
        self._build_overlay()
        if self._analysis_enabled:
            self._build_analyzer()
        self.daynight.devices = self.devices
        self.daynight.rebaseline = self.analyzer.rebaseline if self.analyzer is not None else None
        self.daynight.vision_night = self.analyzer.set_night if self.analyzer is not None else None
        self.diagnostics = self._diagnostics()  # now with the parts built above
        register_node_commands(self.commands, CommandParts(
            node_id=cfg.node.id, storage_path=Path(cfg.storage.path), link=self.link,
            recorder=self.recorder, daynight=self.daynight, diagnostics=self.diagnostics,
            faults=self.faults, analyzer=self.analyzer))
        self.commands.register("live", self.live.command,
                               "live view: {stream: sub|main, minutes} or {stop: true}")
        self._close_interrupted_events()
        self.link.start()
        self.pipeline.start()
        self.notifier.ready(f"recording {redact_url(cfg.camera.source)}")

    def stop(self) -> None:
        """Camera off → encoder flushed → last segment closed → events ended → GPIO safe →
        ``offline``. Each step is guarded: a failing one never skips the ones after it."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping")
        self.notifier.stopping()
        steps = [("live", self.live.close), ("pipeline", self.pipeline.stop)]
        if self.analyzer is not None:
            steps.append(("events", lambda: self.actions.dispatch(self.analyzer.close())))
        steps.append(("recorder", self._close_recorder))
        if self.devices is not None:
            steps.append(("gpio", self.devices.close))
        steps.append(("link", self.link.close))
        if self.outbox is not None:
            steps.append(("outbox", self.outbox.close))
        if self.open_events is not None:
            steps.append(("open events", self.open_events.close))
        for name, step in steps:
            try:
                step()
            except Exception:
                log.exception("stop: %s failed", name)
        log.info("stopped")

    def _close_interrupted_events(self) -> None:
        """Events a power cut or crash left open get their ``end`` now (``end_reason``
        "interrupted", ended at the last activity recorded before the cut)."""
        if self.open_events is None:
            return
        d = self.cfg.detect
        rules = EventRules(motion=Rules(protect=False),
                           object=Rules(pre_roll_s=d.pre_roll_s, post_roll_s=d.post_roll_s))
        left = self.open_events.left_open()
        for payload in left:
            try:
                actions = close_interrupted(payload, rules)
            except (KeyError, TypeError, ValueError) as exc:  # an unreadable record: dropped
                log.error("cannot close interrupted event %s: %s", payload.get("id"), exc)
                self.open_events.track({"id": payload.get("id"), "phase": "end"})
                continue
            self.actions.dispatch(actions)
        if left:
            log.warning("closed %d event(s) left open by an interruption", len(left))

    def _close_recorder(self) -> None:
        if not self.pipeline.join(0):  # never close the recorder under a live encoder thread
            log.error("encoder thread still running after the stop timeout: recorder left open")
            return
        self.recorder.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a finite source to be fully recorded; True when the pipeline ended."""
        return self.pipeline.join(timeout)

    def run(self, stop: threading.Event) -> None:
        """Main thread: start, run :class:`~node.mainloop.MainLoop` until ``stop``, then a clean stop."""
        self.start()
        led = self.devices.led if self.devices is not None else None
        loop = MainLoop(clock=self.clock, notifier=self.notifier, faults=self.faults,
                        pipeline=self.pipeline, link=self.link, heartbeat=self.heartbeat,
                        daynight_step=lambda: self.daynight.step(self.pipeline.counters.luma_mean),
                        led=led, heartbeat_s=self.cfg.mqtt.heartbeat_s,
                        daynight_s=self.cfg.daynight.check_s,
                        every_tick={"live": lambda: self.live.step(self.clock.monotonic()),
                                    "budget": lambda: self.budget.tick() if self.budget else None})
        self.commands.register("restart", lambda args: self._restart(args, stop),
                               "restart the node: {reason} (a clean stop; systemd starts it again)")
        try:
            loop.run(stop)
        finally:
            self.stop()

    def _restart(self, args: dict, stop: threading.Event) -> dict:
        """``cmd/restart``: a clean stop (last segment closed, ``offline`` published) that the
        unit's ``Restart=always`` turns into a restart a few seconds later. Runs on the MQTT
        thread; the main loop sees ``stop`` at its next tick, after this reply is sent."""
        expect_keys(args, {"reason"})
        reason = args.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 200:
            raise CommandError("reason must be a string of at most 200 characters")
        log.warning("restart requested by the station: %s", reason or "(no reason given)")
        stop.set()
        return {"restarting": True, "reason": reason}

    def healthy(self) -> bool:
        """For the systemd watchdog (see :func:`node.mainloop.healthy`)."""
        return healthy(self.pipeline, self.clock.monotonic())

    def heartbeat(self) -> dict[str, Any]:
        return self.diagnostics.heartbeat()

    # -- building ----------------------------------------------------------------
    def _remove_stale_exports(self) -> None:
        """Clip exports interrupted by a stop or a power cut (``clip-*`` work directories)."""
        import shutil

        for work in Path(self.cfg.storage.path).glob("clip-*"):
            if work.is_dir():
                shutil.rmtree(work, ignore_errors=True)
                log.info("removed an interrupted clip export: %s", work.name)

    def _probe_platform(self) -> None:
        if self.platform is not None:
            return
        from hw.platform import probe

        try:
            self.platform = probe("/")
        except Exception as exc:  # a strange board must not stop recording
            log.exception("platform probe failed")
            self.faults.set("platform", f"probe failed: {exc}")

    def _build_devices(self) -> None:
        if self.devices is not None:
            return
        from hw.gpio import GpioError, build_devices
        from node.hwcheck import gpio_spec

        try:
            self.devices = build_devices(gpio_spec(self.cfg))
        except GpioError as exc:
            self.faults.set("gpio", str(exc))
            return
        if self.devices.led is not None:
            from hw.gpio import LedCode

            self.devices.led.set_code(LedCode.BOOTING)
            self.devices.led.start()

    def _build_overlay(self) -> None:
        ov = self.cfg.overlay
        if not ov.enabled:
            return
        from hw.overlay import TextOverlay

        self.overlay = TextOverlay(self.cfg.node.name, self.cfg.node.timezone, position=ov.position,
                                   scale=ov.scale, show_name=ov.show_name)

    def _build_analyzer(self) -> None:
        from node.vision.analyzer import Analyzer

        self.analyzer = Analyzer(self.cfg.motion, self.cfg.detect, self.clock, detector=self._detector,
                                 base_dir=self._base_dir, node_id=self.cfg.node.id)
        if self.analyzer.reason:
            log.warning("object detection off: %s", self.analyzer.reason)

    def _open_source(self) -> FrameSource:
        if self._given_source is not None:
            return self._given_source
        cam, enc = self.cfg.camera, self.cfg.encoder
        options: dict[str, Any] = {}
        if cam.source in ("picamera2", "csi"):
            from hw.platform import VC4_KINDS

            kind = getattr(self.platform, "kind", "")
            options = dict(bitrate_kbps=enc.bitrate_kbps, gop_s=enc.gop_s, profile=enc.profile,
                           hardware_encoder=kind in VC4_KINDS, overlay=self.overlay)
            if self.budget is None:  # once: a reopened camera keeps what the loop learnt
                self.budget = self._build_budget(cam.width, cam.height, cam.fps, "picamera2")
            if self.budget is not None:  # picamera2's encoder: bitrate and intra period
                options["rate"] = self.budget.settings
        source = open_source(source_spec(cam.source, cam.password_file), cam.width, cam.height, cam.fps,
                             (cam.lores_width, cam.lores_height), self.clock, realtime=cam.realtime,
                             loop=cam.loop, options=options or None)
        self.daynight.camera = source
        if self.budget is not None and hasattr(source, "set_rate"):
            self.budget.apply_fn = source.set_rate
        return source

    def _make_encoder(self, frame: Frame, stream: StreamInfo) -> tuple[Any, StreamInfo]:
        """Encoder thread, first frame: the given encoder, or the probed hardware-first choice."""
        if self._given_encoder is not None:
            return self._given_encoder, self._given_encoder.start(stream)
        from hw.encode.select import open_encoder

        enc = self.cfg.encoder
        self.live.pixels = frame.main is not None or "lores_yuv" in frame.meta
        encoded = frame.packet is not None and frame.main is None
        budget = None if encoded else self._build_budget(stream.width, stream.height, stream.fps,
                                                          "libx264")
        encoder, report = open_encoder(
            list(enc.candidates) or None, stream, bitrate_kbps=enc.bitrate_kbps, gop_s=enc.gop_s,
            profile=enc.profile, preset=enc.preset, fallback=enc.fallback,
            source_encoded=encoded, rate=budget.settings if budget is not None else None)
        self.encoder_report = report
        log.info("%s", report.summary())
        if budget is not None and report.chosen != "libx264":  # a bitrate encoder: its own knob
            budget = self._build_budget(stream.width, stream.height, stream.fps, report.chosen)
            if budget is not None:
                encoder.reconfigure(budget.settings)
        if budget is not None:
            budget.apply_fn = encoder.reconfigure
            self.fanout.add(budget.meter)
            self.budget = budget
        elif encoded and self.budget is not None and self.budget.meter is not None:
            self.fanout.add(self.budget.meter)  # picamera2: its encoder's bytes, measured here
        return encoder, StreamInfo("h264", stream.width, stream.height, stream.fps)

    def _build_budget(self, width: int, height: int, fps: float, encoder_name: str) -> Any:
        """The storage budget for this stream (None when off); a bad setting is a fault."""
        from node.record.budget import build_budget

        try:
            return build_budget(self.cfg, width, height, fps, self.clock, self.recorder,
                                encoder_name=encoder_name,
                                phase_fn=lambda: self.daynight.state.mode)
        except ValueError as exc:
            self.faults.set("budget", str(exc))
            return None

    # -- per-frame hooks -----------------------------------------------------------
    def _stamp(self, frame: Frame) -> None:
        """Encoder thread: burn name and time into the main image (not for passthrough)."""
        if self.overlay is not None and frame.main is not None and frame.packet is None:
            self.overlay.apply(frame.main, frame.width, frame.height, frame.utc, self.clock.synced())
        self.live.offer_frame(frame)

    def _analyse(self, frame: Frame) -> None:
        """Analysis thread: motion, detection, events → recorder and link."""
        if self.analyzer is not None:
            self.actions.dispatch(self.analyzer.process(frame))

    def _event_tier(self, event_id: str, open_: bool) -> None:
        """Analysis thread: the budget's event tier is on while any object event is open."""
        (self._tier_events.add if open_ else self._tier_events.discard)(event_id)
        if self.budget is not None:
            self.budget.set_event(bool(self._tier_events))

    def _on_command(self, name: str, payload: bytes, retained: bool = False) -> None:
        self.commands.handle(name, payload, retained=retained)
