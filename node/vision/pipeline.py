"""The analysis pipeline: lores motion → crops → TFLite → persistence → events → actions.

:class:`Analyzer` is what the node's analysis thread calls for every frame. Per frame it
runs motion detection on the lores luma (tens of µs), decides whether the model needs to
look at anything, and advances the pure event machine (:mod:`node.events`).

When the model looks (all rates in ``[detect]``):

* **unexplained motion** (regions not overlapping an object already tracked): at most
  ``fps`` calls a second, on crops around the regions — this is what finds a newcomer fast;
  regions inside ones a call found empty less than ``EMPTY_S`` ago are skipped (every region
  the call's crops covered counts, also on a tracked object's re-check: the motion left
  where someone just walked out is not looked at again as soon as their event ends);
* **tentative tracks** (hit fewer than ``min_hits`` times): at ``fps``, to confirm or drop
  them quickly;
* **confirmed tracks**: every ``track_s`` while motion overlaps them, every ``still_s`` when
  they stand still. A still, tracked object is *held* in its event between checks: it cannot
  have left without causing motion. This is what keeps a person waiting at a gate in one
  event while costing one inference call every few seconds.

Inference runs on one worker thread (``threaded=True``, the node) or inline (``threaded=False``,
tests and benchmarks: deterministic). With the worker, a call's result is picked up by the
next :meth:`Analyzer.process` call; events carry the times of the frames the model saw, so
the delay does not move event times.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hw.camera.base import Frame
from node.events import (
    Action,
    EventRules,
    EventState,
    Instant,
    Obs,
    PublishEvent,
    PublishSnapshot,
    Rules,
    Sighting,
    TakeSnapshot,
    flush,
    step,
)
from node.vision.motion import MotionDetector, MotionParams, MotionResult
from node.vision.person import (
    Box,
    Crop,
    Found,
    Persistence,
    crop_luma3,
    crop_rgb,
    dedupe,
    patch,
    plan_crops,
    plan_tiles,
    scale_box,
    to_frame,
)
from node.vision.snapshot import encode_jpeg, grey_to_yuv

log = logging.getLogger(__name__)

#: Mean absolute patch difference (luma levels) below which a tracked box "looks the same".
SAME_LEVEL = 12.0

#: How long a motion region the model found empty is not looked at again (unless it grows).
EMPTY_S = 1.0

#: Config names accepted for model labels.
ALIASES = {"motorbike": "motorcycle", "bike": "bicycle", "people": "person", "pedestrian": "person"}


@dataclass(slots=True)
class _Job:
    seq: int
    mono: float
    utc: Any
    image: np.ndarray  # main yuv420p, or lores luma when the source has no pixels
    width: int
    height: int
    colour: bool
    crops: list[Crop]
    lores: np.ndarray
    motion: list[Box]  # motion regions the crops cover (known empty if nothing is found)
    found: list[Found] | None = None
    ms: float = 0.0


class Analyzer:
    """Motion + object detection + events for one camera (see the module docstring).

    ``cfg_motion``/``cfg_detect``: the ``[motion]``/``[detect]`` config sections (any object
    with the same attributes). ``clock``: the node clock (latency of live sources). ``detector``:
    an already loaded :class:`hw.infer.Detector` to share (tests, bench); otherwise one is loaded
    from ``cfg_detect.model``. ``base_dir``: where relative model paths are resolved.
    """

    def __init__(self, cfg_motion: Any, cfg_detect: Any, clock: Any, *, detector: Any = None,
                 threaded: bool = True, base_dir: str | Path | None = None,
                 snapshot_max_width: int = 1280) -> None:
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
        self._state = EventState()
        self._persist = Persistence(min_hits=cfg_detect.min_hits)
        self._snap_width = snapshot_max_width
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
        self._last_job = float("-inf")
        self._last_unexplained = float("-inf")
        self._empty: list[tuple[Box, float]] = []
        self._recent: dict[int, tuple[np.ndarray, int, int]] = {}
        self._pinned: tuple[int, np.ndarray, int, int] | None = None
        self._last_result = MotionResult()
        self._scan_due = False
        self.detector = None
        self.reason: str | None = None
        self._class_ids: dict[int, str] = {}
        self._load(detector, base_dir)
        self._worker: _Worker | None = None
        if self.detector is not None and threaded:
            self._worker = _Worker(self._infer)
            self._worker.start()

    # ------------------------------------------------------------------ setup

    def _load(self, detector: Any, base_dir: str | Path | None) -> None:
        from hw.infer import Detector, InferError, read_labels

        cd = self.cd
        if not cd.enabled:
            self.reason = "object detection disabled in config ([detect] enabled = false)"
            return
        base = Path(base_dir) if base_dir else Path.cwd()
        model, labels_path = base / cd.model, base / cd.labels
        try:
            labels = read_labels(labels_path)
        except OSError as exc:
            self.reason = f"labels file not readable: {labels_path} ({exc.strerror}); motion only"
            return
        wanted = [ALIASES.get(c.lower(), c.lower()) for c in cd.classes]
        ids = {i: name for i, name in enumerate(labels) if name.lower() in wanted}
        unknown = sorted(set(wanted) - {n.lower() for n in ids.values()})
        if not ids:
            self.reason = f"none of the classes {cd.classes} is in {labels_path.name}; motion only"
            return
        if unknown:
            log.warning("classes not in the labels file, ignored: %s", ", ".join(unknown))
        if detector is None:
            if not model.is_file():
                self.reason = f"model file not found: {model}; motion only"
                return
            try:
                detector = Detector(model, threads=cd.threads)
            except InferError as exc:
                self.reason = f"{exc}; motion only"
                return
        self.detector, self._class_ids = detector, ids

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
            self._last_job = self._last_unexplained = float("-inf")
            self._empty.clear()
            self._recent.clear()  # frame numbers may start again too
            self._pinned = None
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
        if self._motion is not None and frame.main is not None:
            self._motion.set_night(monochrome(frame.main, frame.height))
        t0 = time.perf_counter()
        m = self._motion.detect(frame.lores, dt) if self._motion is not None else MotionResult()
        mot_ms = (time.perf_counter() - t0) * 1000.0
        if m.settling and not self._last_result.settling:
            self._scan_due = True
        elif not m.settling and not m.global_change:
            self._scan_due = False  # settled without a chance to scan: motion takes over
        self._last_result = m
        colour = frame.main is not None
        w, h = (frame.width, frame.height) if colour else (lw, lh)
        boxes = [scale_box(b, w / lw, h / lh) for b in m.boxes]
        seen: list[Sighting] = []
        if self.detector is not None:
            self._mark_moved(frame.lores, w, h)
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
        box = _rel_union(boxes, w, h)
        obs = Obs(motion=m.moving, box=box, seen=tuple(seen), held=held)
        had_event = self._state.object is not None
        self._state, actions = step(self._state, obs, now, self._rules)
        if had_event and self._state.object is None:
            # The event ended: its confirmed tracks went unseen for the quiet period. Left
            # alive they would "explain" a newcomer's motion at the same spot and slow its check.
            self._persist.tracks = [t for t in self._persist.tracks if not self._persist.confirmed(t)]
        out = restart + self._carry_out(actions)
        self._pin_best()
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

    # ------------------------------------------------------------------ scheduling

    def _mark_moved(self, lores: np.ndarray, w: int, h: int) -> None:
        """A confirmed track *moved* once its box no longer looks as at its last hit.

        The lores patch of the box is compared with the one taken at the hit (mean absolute
        difference after removing the mean, in luma levels). A person standing, swaying or
        gesturing stays below ``SAME_LEVEL``; someone walking away, or the empty background
        appearing, goes far above it. Sticky until the next hit. Cost: ≈10 µs a track.
        """
        lh, lw = lores.shape
        for t in self._persist.tracks:
            if t.moved or t.template is None:
                continue
            if t.box[0] <= 0.02 * w or t.box[2] >= 0.98 * w:
                # At the left/right edge someone can step out leaving the box almost unchanged.
                t.moved = True
                continue
            p = patch(lores, scale_box(t.box, lw / w, lh / h))
            t.moved = float(np.abs(p - t.template).mean()) > SAME_LEVEL

    def _plan(self, frame: Frame, boxes: list[Box], colour: bool, w: int, h: int) -> _Job | None:
        """Pick what the model looks at on this frame, or None (see the module docstring)."""
        if self._worker is not None and self._worker.busy():
            return None
        now = frame.mono
        if now - self._last_job < 1.0 / self.cd.fps:
            return None
        tracks = self._persist.tracks
        due = [b for b in boxes if not any(_overlap(b, _grow(t.box, 0.25)) for t in tracks)]
        # A motion region inside one the model found empty less than EMPTY_S ago is not looked
        # at again (the fading ghost of someone who left, a curtain): it must grow first.
        self._empty = [(c, t) for c, t in self._empty if now - t < EMPTY_S]
        due = [b for b in due if not any(_inside(b, _grow(c, 0.1)) for c, _ in self._empty)]
        if due and self._state.object is not None and now - self._last_unexplained < self.cd.still_s:
            # An object event is open: newcomers only add to it, so look at them less often.
            due = []
        if due:
            self._last_unexplained = now
        unexplained = list(due)
        for t in tracks:
            if not self._persist.confirmed(t) or t.misses:
                interval = 0.0  # confirm a newcomer, or re-check a missed object, at once
            elif t.moved:
                interval = self.cd.track_s
            else:
                interval = self.cd.still_s
            if now - t.checked >= interval:
                due.append(t.box)
        scan = self._scan_due and self.cd.scan_on_rebaseline
        if not due and not scan:
            return None
        if scan:
            # The background was just (re)learnt, with whoever stands in the scene in it:
            # look at all of it once, in tiles, so they are not missed until they move.
            self._scan_due = False
            crops = plan_tiles(w, h)
        else:
            crops = plan_crops(due, w, h, tiles_for_small=self.cd.tiles_for_small)
        self._last_job = now
        image = frame.main if colour else frame.lores
        # Every motion region the crops cover is examined, not only the unexplained ones: when
        # the model finds nothing (a tracked person just left), they are all known empty.
        looked = unexplained + [b for b in boxes if b not in unexplained
                                and any(_inside(b, _crop_box(c)) for c in crops)]
        job = _Job(frame.seq, frame.mono, frame.utc, image, w, h, colour, crops, frame.lores, looked)  # type: ignore[arg-type]
        self._recent[frame.seq] = (image, w, h)  # type: ignore[assignment]
        if len(self._recent) > 8:
            self._recent.pop(next(iter(self._recent)))
        return job

    def _infer(self, job: _Job) -> None:
        """Run the model on the job's crops (worker thread, or inline)."""
        det = self.detector
        size = det.input_size
        found: list[Found] = []
        t0 = time.perf_counter()
        for crop in job.crops:
            if job.colour:
                img = crop_rgb(job.image, job.width, job.height, crop, size, smooth=self.cd.smooth_crops)
            else:
                img = crop_luma3(job.image, crop, size)
            for d in det.detect(img, self.cd.score):
                label = self._class_ids.get(d.class_id)
                if label is not None:
                    found.append(Found(label, d.score, to_frame(d.box, crop), job.seq, job.utc, job.mono))
        job.ms = (time.perf_counter() - t0) * 1000.0
        job.found = dedupe(found)

    def _digest(self, job: _Job, w: int, h: int) -> list[Sighting]:
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
            self._empty += [(b, job.mono) for b in job.motion]
        lh, lw = job.lores.shape
        for t in self._persist.tracks:
            if t.last.seq == job.seq and not t.moved:  # hit by this job: new reference look
                t.template = patch(job.lores, scale_box(t.box, lw / w, lh / h))
        for first, last in confirmed:
            out.append(Sighting(last.label, last.score, _rel(last.box, w, h), last.seq,
                                Instant(last.mono, last.utc), Instant(first.mono, first.utc)))
        return out

    # ------------------------------------------------------------------ actions

    def _carry_out(self, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for a in actions:
            if isinstance(a, TakeSnapshot):
                snap = self._snapshot(a)
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

    def _pin_best(self) -> None:
        """Keep a copy of the frame of the open object event's best detection (for its snapshot)."""
        ev = self._state.object
        if ev is None:
            self._pinned = None
            return
        if self._pinned is not None and self._pinned[0] == ev.seq:
            return
        got = self._recent.get(ev.seq)
        if got is not None:
            self._pinned = (ev.seq, got[0].copy(), got[1], got[2])

    def _snapshot(self, a: TakeSnapshot) -> PublishSnapshot | None:
        if self._pinned is not None and self._pinned[0] == a.seq:
            image, w, h = self._pinned[1], self._pinned[2], self._pinned[3]
        elif a.seq in self._recent:
            image, w, h = self._recent[a.seq]
        else:
            log.warning("snapshot frame %d of event %s no longer held", a.seq, a.event_id)
            return None
        if image.ndim == 2 and image.shape[0] == h:  # lores luma only
            image = grey_to_yuv(image)
            h, w = image.shape[0] * 2 // 3, image.shape[1]
        try:
            jpeg = encode_jpeg(image, w, h, a.box, max_width=self._snap_width)
        except Exception:
            log.exception("snapshot of event %s failed", a.event_id)
            return None
        return PublishSnapshot(a.event_id, jpeg, a.box, a.label, a.score, a.utc)

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
            },
            "detect": d,
            "frames": frames,
            "fps": round((frames - 1) / span, 2) if span > 0 else None,
            "events_started": events,
            "object_event_latency_s": None if self._latency is None else round(self._latency, 3),
            "open": {"motion": st.motion.id if st.motion else None,
                     "object": st.object.id if st.object else None},
        }


class _Worker:
    """One inference thread with a one-job mailbox: a new job is only given when it is idle."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn
        self._cond = threading.Condition()
        self._job: _Job | None = None
        self._done: _Job | None = None
        self._running = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="camnode-infer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def busy(self) -> bool:
        with self._cond:
            return self._job is not None or self._running or self._done is not None

    def submit(self, job: _Job) -> None:
        with self._cond:
            self._job = job
            self._cond.notify_all()

    def take(self) -> _Job | None:
        with self._cond:
            done, self._done = self._done, None
            return done

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None and not self._running, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job, self._job, self._running = self._job, None, True
            try:
                self._fn(job)
            except Exception:
                log.exception("inference failed")
                job.found = []
            with self._cond:
                self._running = False
                self._done = job
                self._cond.notify_all()


def monochrome(main: np.ndarray, height: int) -> bool:
    """The picture has no colour (an IR night, or a B/W camera): night mode for motion.

    A sparse sample of the chroma planes (every 7th row, every 16th byte) all within 3
    levels of neutral. Cost: ≈5 µs at 1080p.
    """
    uv = main[height::7, ::16]
    return bool(uv.size) and int(uv.max()) <= 131 and int(uv.min()) >= 125


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _crop_box(c: Crop) -> Box:
    return (c.x, c.y, c.x + c.w, c.y + c.h)


def _inside(a: Box, b: Box) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]


def _grow(b: Box, f: float) -> Box:
    dx, dy = int((b[2] - b[0]) * f), int((b[3] - b[1]) * f)
    return (b[0] - dx, b[1] - dy, b[2] + dx, b[3] + dy)


def _rel(b: Box, w: int, h: int) -> tuple[float, float, float, float]:
    return (max(0.0, b[0] / w), max(0.0, b[1] / h), min(1.0, b[2] / w), min(1.0, b[3] / h))


def _rel_union(boxes: list[Box], w: int, h: int) -> tuple[float, float, float, float] | None:
    if not boxes:
        return None
    return _rel((min(b[0] for b in boxes), min(b[1] for b in boxes),
                 max(b[2] for b in boxes), max(b[3] for b in boxes)), w, h)
