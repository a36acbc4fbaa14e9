"""The analysis of one camera: lores motion → crops → TFLite → persistence → events → actions.

:class:`Analyzer` is what the node's analysis thread calls for every frame. Per frame it
runs motion detection on the lores luma (tens of µs), decides whether the model needs to
look at anything, and advances the pure event machine (:mod:`node.events`).

When the model looks, and at what, is :mod:`node.vision.schedule`; the model and its crops are
:mod:`node.vision.detector` and :mod:`node.vision.crops`; detections become confirmed tracks in
:mod:`node.vision.tracks`; the frames event snapshots are taken from are kept by
:class:`node.vision.snapshot.SnapshotFrames`.

Inference runs on one worker thread (:mod:`node.vision.worker`; ``threaded=True``, the node)
or inline (``threaded=False``, tests and benchmarks: deterministic). With the worker, a call's
result is picked up by the next :meth:`Analyzer.process` call; events carry the times of the
frames the model saw, so the delay does not move event times.

Without a model (file missing, no runtime, ``[detect] enabled = false``) the analyzer runs
motion detection and motion events only, and :meth:`Analyzer.health` says why detection is off.

Threads: :meth:`process` and :meth:`close` on the analysis thread only; :meth:`rebaseline`
and :meth:`health` from any thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from hw.media import Frame
from node.events import (
    Action,
    EventRules,
    EventState,
    Instant,
    Obs,
    PublishEvent,
    Rules,
    Sighting,
    TakeSnapshot,
    flush,
    step,
)
from node.vision.appearance import Appearances
from node.vision.boxes import Box, rel, rel_union, scale_box
from node.vision.detector import load_detector, run_job
from node.vision.motion import MotionDetector, MotionParams, MotionResult
from node.vision.schedule import Scheduler
from node.vision.snapshot import SnapshotFrames
from node.vision.tracks import Persistence, patch
from node.vision.worker import InferenceWorker, Job

log = logging.getLogger(__name__)

class Analyzer:
    """Motion + object detection + events for one camera (see the module docstring).

    ``cfg_motion``/``cfg_detect``: the ``[motion]``/``[detect]`` config sections (any object
    with the same attributes). ``clock``: the node clock (latency of live sources). ``detector``:
    an already loaded :class:`hw.infer.Detector` to share (tests, bench); otherwise one is loaded
    from ``cfg_detect.model``. ``base_dir``: where relative model paths are resolved.
    """

    def __init__(self, cfg_motion: Any, cfg_detect: Any, clock: Any, *, detector: Any = None,
                 threaded: bool = True, base_dir: str | Path | None = None,
                 snapshot_max_width: int = 1280, node_id: str = "") -> None:
        self.cm, self.cd, self.clock = cfg_motion, cfg_detect, clock
        self._params = MotionParams(
            cell_px=cfg_motion.cell_px, threshold=cfg_motion.threshold,
            noise_factor=cfg_motion.noise_factor, min_area=cfg_motion.min_area,
            background_s=cfg_motion.background_s, still_s=cfg_motion.still_s,
            global_fraction=cfg_motion.global_fraction, settle_frames=cfg_motion.settle_frames,
            masks=tuple(tuple(p) for p in cfg_motion.masks),
            night_threshold=cfg_motion.night_threshold, night_noise_factor=cfg_motion.night_noise_factor,
            min_area_px=cfg_motion.min_area_px, far_scale=cfg_motion.far_scale,
            persist_frames=cfg_motion.persist_frames, history_frames=cfg_motion.history_frames,
            passing_step=cfg_motion.passing_step)
        self._rules = EventRules(
            motion=Rules(quiet_s=cfg_motion.quiet_s, min_s=cfg_motion.min_s, max_s=cfg_motion.max_s,
                         cooldown_s=cfg_motion.cooldown_s, protect=False),
            object=Rules(quiet_s=cfg_detect.quiet_s, max_s=cfg_detect.max_s,
                         cooldown_s=cfg_detect.cooldown_s, pre_roll_s=cfg_detect.pre_roll_s,
                         post_roll_s=cfg_detect.post_roll_s))
        self._motion: MotionDetector | None = None
        self._rebaseline_pending = False
        self._state = EventState(node_id=node_id)  # (event ids begin with it)
        self._persist = Persistence(min_hits=cfg_detect.min_hits)
        self._sched = Scheduler(cfg_detect, self._persist)
        self._snaps = SnapshotFrames(snapshot_max_width)
        self._looks = Appearances()  # colours and entry/exit side of object events
        self._lock = threading.Lock()
        self._motion_ms: deque[float] = deque(maxlen=200)
        self._infer_ms: deque[float] = deque(maxlen=100)
        self._frames = 0
        self._jobs = 0
        self._crops = 0
        self._events = 0
        self._first_mono: float | None = None
        self._last_mono: float | None = None
        self._last_instant: Instant | None = None
        self._latency: float | None = None
        self._last_result = MotionResult()
        self._scan_due = False
        self._night_told = False  # the day/night controller switched to night (IR on)
        self.detector, self._class_ids, self.reason = load_detector(cfg_detect, detector, base_dir)
        if self.detector is not None and cfg_detect.smooth_crops:
            self._sched.model_px = int(self.detector.input_size[0])
        self._worker: InferenceWorker | None = None
        if self.detector is not None and threaded:
            self._worker = InferenceWorker(self._infer)
            self._worker.start()

    # ------------------------------------------------------------------ the analysis thread

    def process(self, frame: Frame) -> list[Action]:
        """Analyse one frame; return the actions for the link and the recorder.

        Cost: motion detection (≈0.1 ms) and a little bookkeeping; crop sampling (≈0.8 ms a
        crop) and the inference run on the worker thread (inline when not threaded).
        """
        now = Instant(frame.mono, frame.utc)
        restart: list[Action] = []
        if self._last_instant is not None and frame.mono < self._last_instant.mono:
            # Time went backwards (a source restarted its timeline): end what is open and
            # start afresh rather than let durations and rates go negative.
            log.warning("frame time went back %.3f s: events ended, schedules reset",
                        self._last_instant.mono - frame.mono)
            restart = self.close_events()
            self._persist.clear()
            self._sched.reset()
            self._snaps.clear()  # frame numbers may start again too
            self._last_mono = None
        dt = 1.0 / 15 if self._last_mono is None else min(2.0, max(1e-3, frame.mono - self._last_mono))
        self._last_mono = frame.mono
        self._last_instant = now
        if self._first_mono is None:
            self._first_mono = frame.mono
        lh, lw = frame.lores.shape
        if self._motion is None and self.cm.enabled:
            scale = frame.width / lw if frame.main is not None else 1.0
            self._motion = MotionDetector(lw, lh, dataclasses.replace(self._params, main_scale=scale))
            if self._rebaseline_pending:
                self._motion.rebaseline()
        if self._motion is not None:
            grey = frame.main is not None and monochrome(frame.main, frame.height)
            self._motion.set_night(self._night_told or grey)
        t0 = time.perf_counter()
        m = self._motion.detect(frame.lores, dt) if self._motion is not None else MotionResult()
        mot_ms = (time.perf_counter() - t0) * 1000.0
        if m.settling and not self._last_result.settling:
            self._scan_due = True  # the background is being (re)learnt: look at everything once
        elif not m.settling and not m.global_change:
            self._scan_due = False  # settled before the model was free to scan: motion takes over
        self._last_result = m
        colour = frame.main is not None
        w, h = (frame.width, frame.height) if colour else (lw, lh)
        boxes = [scale_box(b, w / lw, h / lh) for b in m.boxes]
        seen: list[Sighting] = []
        if self.detector is not None:
            self._sched.mark_moved(frame.lores, w, h)
            if self._worker is not None:
                done = self._worker.take()
                if done is not None and done.mono <= frame.mono:  # (not from before a restart)
                    seen += self._digest(done, w, h)
            job = self._plan(frame, boxes, colour, w, h)
            if job is not None:
                if self._worker is not None:
                    self._worker.submit(job)
                else:
                    self._infer(job)
                    seen += self._digest(job, w, h)
        held = any(self._persist.confirmed(t) and not t.moved and t.misses == 0 for t in self._persist.tracks)
        box = rel_union(boxes, w, h)
        obs = Obs(motion=m.moving, box=box, seen=tuple(seen), held=held)
        had_event = self._state.object is not None
        self._state, actions = step(self._state, obs, now, self._rules)
        if had_event and self._state.object is None:
            # The event ended: its confirmed tracks went unseen for the quiet period. Left
            # alive they would "explain" a newcomer's motion at the same spot and slow its check.
            self._persist.tracks = [t for t in self._persist.tracks if not self._persist.confirmed(t)]
        ev = self._state.object
        if ev is not None:
            self._looks.observe(ev.id, [s.box for s in seen if s.label == ev.label])
        out = restart + self._carry_out(actions)
        self._snaps.pin(self._state.object.seq if self._state.object is not None else None)
        with self._lock:
            self._frames += 1
            self._motion_ms.append(mot_ms)
        return out

    def rebaseline(self) -> None:
        """Re-learn the motion background at the next frame (thread-safe; IR switched)."""
        if self._motion is not None:
            self._motion.rebaseline()
        else:
            self._rebaseline_pending = True

    def set_night(self, night: bool) -> None:
        """The day/night controller's mode (any thread): at night motion uses its night
        sensitivity, as it does on its own whenever the picture has no colour (a NoIR camera
        under IR may keep a tint: the controller knows better)."""
        self._night_told = night

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the inference worker has finished its job (tests, benchmarks). True if idle.

        The finished result is still picked up by the next :meth:`process` call.
        """
        return self._worker.wait_idle(timeout) if self._worker is not None else True

    def close(self) -> list[Action]:
        """Stop the worker; end open events. Returns the final actions (publish them)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        return self.close_events()

    def close_events(self) -> list[Action]:
        """End open events at the last frame's time (analysis thread); returns their actions."""
        if self._last_instant is None:
            return []
        self._state, actions = flush(self._state, self._last_instant, self._rules)
        return self._carry_out(actions)

    @property
    def state(self) -> EventState:
        """The event machine's state (read on the analysis thread)."""
        return self._state

    # ------------------------------------------------------------------ inference

    def _plan(self, frame: Frame, boxes: list[Box], colour: bool, w: int, h: int) -> Job | None:
        """The job for the model on this frame, or None (see :mod:`node.vision.schedule`)."""
        if self._worker is not None and self._worker.busy():
            return None
        scan = self._scan_due and self.cd.scan_on_rebaseline
        job = self._sched.plan(frame, boxes, colour, w, h, event_open=self._state.object is not None,
                               scan=scan)
        if scan and job is not None:
            self._scan_due = False
        if job is not None:
            self._snaps.keep(frame.seq, job.image, w, h)
        return job

    def _infer(self, job: Job) -> None:
        """Run the model on the job's crops (worker thread, or inline)."""
        run_job(self.detector, self._class_ids, self.cd.score, job, smooth=self.cd.smooth_crops)

    def _digest(self, job: Job, w: int, h: int) -> list[Sighting]:
        """Persistence on a finished job; the confirmed detections as sightings (analysis thread)."""
        with self._lock:
            self._jobs += 1
            self._crops += len(job.crops)
            self._infer_ms.append(job.ms)
        out = []
        confirmed = self._persist.update(job.found or [], job.crops, job.mono)
        # An object that changed look (walking off) and was missed twice in a row is gone;
        # one that stands still gets a third look (max_misses) before it is given up.
        self._persist.tracks = [t for t in self._persist.tracks if not (t.moved and t.misses >= 2)]
        if not job.found:
            self._sched.found_empty(job.motion, job.mono)
        lh, lw = job.lores.shape
        for t in self._persist.tracks:
            if t.last.seq == job.seq and not t.moved:  # hit by this job: new reference look
                t.template = patch(job.lores, scale_box(t.box, lw / w, lh / h))
        for first, last in confirmed:
            out.append(Sighting(last.label, last.score, rel(last.box, w, h), last.seq,
                                Instant(last.mono, last.utc), Instant(first.mono, first.utc)))
        return out

    # ------------------------------------------------------------------ actions

    def _carry_out(self, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for a in actions:  # name the colours of the best frame first: the messages carry them
            if isinstance(a, TakeSnapshot) and (got := self._snaps.frame(a.seq)) is not None:
                self._looks.best_frame(a.event_id, got[0], got[1], got[2], a.box, a.label)
        for a in actions:
            if isinstance(a, PublishEvent):
                a = PublishEvent(self._looks.decorate(a.payload))
            if isinstance(a, TakeSnapshot):
                snap = self._snaps.take(a)
                if snap is not None:
                    out.append(snap)
            else:
                out.append(a)
                if isinstance(a, PublishEvent) and a.payload.get("phase") == "start":
                    with self._lock:
                        self._events += 1
                    ev = self._state.object
                    if a.payload.get("kind") == "object" and ev is not None and ev.id == a.payload["id"]:
                        # From the first sighting to now, on the clock frames are stamped with
                        # (meaningful for live sources, whose frame.mono is the node clock's).
                        self._latency = self.clock.monotonic() - ev.start.mono
        return out

    # ------------------------------------------------------------------ diagnostics

    def health(self) -> dict[str, Any]:
        """Detector state for diagnostics (any thread): model or why detection is off, costs, rates."""
        with self._lock:
            frames, jobs, crops, events = self._frames, self._jobs, self._crops, self._events
            mot = sorted(self._motion_ms)
            inf = sorted(self._infer_ms)
        span = (self._last_mono or 0.0) - (self._first_mono or 0.0)
        st = self._state
        d: dict[str, Any] = {
            "enabled": self.detector is not None,
            "reason": self.reason,
            "classes": sorted(set(self._class_ids.values())),
            "inference_calls": jobs,
            "crops": crops,
            "inference_ms": round(inf[len(inf) // 2], 2) if inf else None,
            "inference_fraction": round(jobs / frames, 4) if frames else 0.0,
            "model_calls_per_s": round(crops / span, 2) if span > 0 else None,
            "tracks": len(self._persist.tracks),
        }
        if self.detector is not None:
            d.update(self.detector.describe())
        return {
            "motion": {
                "enabled": self._motion is not None or self.cm.enabled,
                "ms": round(mot[len(mot) // 2], 3) if mot else None,
                "moving": self._last_result.moving,
                "rebaselines": self._motion.rebaselines if self._motion else 0,
                "night": self._motion.night if self._motion else False,
            },
            "detect": d,
            "frames": frames,
            "fps": round((frames - 1) / span, 2) if span > 0 else None,
            "events_started": events,
            "object_event_latency_s": None if self._latency is None else round(self._latency, 3),
            "open": {"motion": st.motion.id if st.motion else None,
                     "object": st.object.id if st.object else None},
        }


def monochrome(main: np.ndarray, height: int) -> bool:
    """The picture has no colour (an IR night, or a B/W camera): motion uses its night mode.

    A sparse sample of the chroma planes (every 7th row, every 16th byte), all within 3
    levels of neutral. Cost: ≈5 µs at 1080p.
    """
    uv = main[height::7, ::16]
    return bool(uv.size) and int(uv.max()) <= 131 and int(uv.min()) >= 125
