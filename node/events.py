"""Motion and object events as a pure state machine: ``step(state, obs, now) -> (state, actions)``.

No clock, no threads, no I/O: the analysis pipeline feeds one :class:`Obs` per analysed frame
with that frame's :class:`Instant` (monotonic seconds for durations, UTC for the record), and
carries out the returned actions. Tests drive it with tables of (time, observation) rows.

Two independent event kinds:

* **motion** — opens once motion has lasted ``motion.min_s`` (a one-frame blip never opens
  one), stays open while motion is seen, ends ``motion.quiet_s`` after the last motion frame;
* **object** — opens on the first *confirmed* detection (the pipeline's persistence rule) with
  the start time of that detection's first sighting, stays open while objects are seen or
  *held* (a tracked object that has not moved: it cannot have left without motion), ends
  ``object.quiet_s`` after the last sighting. It collects the classes seen and the best
  detection (score, box, frame), whose snapshot the pipeline encodes.

For both: an event longer than ``max_s`` is closed (``end_reason: "max_duration"``) and, if
activity goes on, a new one opens at once; after an event ends, no new one of that kind opens
for ``cooldown_s`` (activity in the cooldown is kept and opens an event when it expires, with
its real start time). An event's ``end`` is the time of its last activity, not the time the
quiet period ran out.

Actions (small frozen dataclasses) go to the MQTT link (:class:`PublishEvent`), the pipeline
(:class:`TakeSnapshot`, turned into :class:`PublishSnapshot`) and the recorder
(:class:`ProtectClip`, :class:`MarkSegments`). ``docs/vision.md`` lists the payload fields.

Thread: pure functions; the state is an immutable value owned by the caller (the analysis thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from node.link.topics import iso

#: Box relative to the main frame: (x0, y0, x1, y1), 0..1.
RelBox = tuple[float, float, float, float]


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Instant:
    """A moment: ``mono`` seconds (durations) and ``utc`` wall time (the record)."""

    mono: float
    utc: datetime

    def iso(self) -> str:
        return iso(self.utc)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A confirmed detection. ``first`` is when its track was first hit (the event start)."""

    label: str
    score: float
    box: RelBox
    seq: int
    at: Instant
    first: Instant


@dataclass(frozen=True, slots=True)
class Obs:
    """What one analysed frame showed.

    ``motion``: motion regions were found; ``box``: their union (relative), if any;
    ``seen``: confirmed detections delivered with this frame; ``held``: a tracked object is
    still present without moving (no motion over its box since its last sighting).
    """

    motion: bool = False
    box: RelBox | None = None
    seen: tuple[Sighting, ...] = ()
    held: bool = False


# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Rules:
    """Timing of one event kind (seconds)."""

    quiet_s: float = 2.0
    min_s: float = 0.0
    max_s: float = 300.0
    cooldown_s: float = 0.0
    #: object events: at most one "update" message per this interval
    update_s: float = 2.0
    #: clip protection around object events
    pre_roll_s: float = 5.0
    post_roll_s: float = 5.0
    protect: bool = True


@dataclass(frozen=True, slots=True)
class EventRules:
    motion: Rules = field(default_factory=lambda: Rules(quiet_s=2.0, min_s=0.2, protect=False))
    object: Rules = field(default_factory=lambda: Rules(quiet_s=2.5))


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class PublishEvent:
    """Send ``payload`` (JSON-able dict) to ``<prefix>/<node>/event`` (QoS 1, not retained)."""

    payload: dict


@dataclass(frozen=True, slots=True)
class TakeSnapshot:
    """Pipeline-internal: encode the main frame ``seq`` with ``box`` for event ``event_id``."""

    event_id: str
    seq: int
    box: RelBox
    label: str
    score: float
    utc: datetime


@dataclass(frozen=True, slots=True)
class PublishSnapshot:
    """Send ``jpeg`` to ``<prefix>/<node>/snapshot/<event_id>`` (binary, QoS 1, retained off).

    ``box`` (relative, also drawn into the picture), ``label``, ``score`` and ``utc`` of the
    frame go in MQTT v5 user properties or are simply known from the event messages.
    """

    event_id: str
    jpeg: bytes
    box: RelBox
    label: str
    score: float
    utc: datetime


@dataclass(frozen=True, slots=True)
class ProtectClip:
    """Recorder: keep the footage from ``start_utc`` to ``end_utc`` (may lie in the future).

    ``end_utc=None`` (sent when an object event starts): open-ended, everything recorded from
    ``start_utc`` on is kept until the same id is protected again with an end (sent when the
    event ends); a crash in between leaves the clip protected.
    """

    event_id: str
    start_utc: datetime
    end_utc: datetime | None


@dataclass(frozen=True, slots=True)
class MarkSegments:
    """Recorder: flag the segments overlapping ``start_utc``..``end_utc`` as having motion/person."""

    event_id: str
    start_utc: datetime
    end_utc: datetime
    motion: bool
    person: bool


Action = PublishEvent | TakeSnapshot | PublishSnapshot | ProtectClip | MarkSegments


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Open:
    """An open event."""

    id: str
    kind: str  # "motion" | "object"
    start: Instant
    last: Instant  # last activity
    classes: tuple[str, ...] = ()
    label: str = ""
    score: float = 0.0
    box: RelBox | None = None
    seq: int = -1  # frame of the best detection
    snap_seq: int = -1  # frame of the last snapshot taken
    updated_mono: float = 0.0
    dirty: bool = False  # something worth an "update" message happened


@dataclass(frozen=True, slots=True)
class Track:
    """Activity not yet an event (too short, or in cooldown)."""

    first: Instant
    last: Instant


@dataclass(frozen=True, slots=True)
class EventState:
    motion: Open | None = None
    motion_pending: Track | None = None
    motion_cooldown_until: float = float("-inf")
    object: Open | None = None
    object_pending: Sighting | None = None
    object_cooldown_until: float = float("-inf")
    counter: int = 0
    #: the node's id, leading every event id (set once): ids are unique across the ward, not
    #: only on one node (two poles' first events after a ward-wide power cut can share a
    #: millisecond and a count, and the archive keeps one event per id)
    node_id: str = ""


# ---------------------------------------------------------------------------- the machine


def step(state: EventState, obs: Obs, now: Instant, rules: EventRules) -> tuple[EventState, list[Action]]:
    """Advance by one observation at ``now``. Pure: same inputs, same outputs."""
    actions: list[Action] = []
    state = _step_motion(state, obs, now, rules.motion, actions)
    state = _step_object(state, obs, now, rules.object, actions)
    return state, actions


def flush(state: EventState, now: Instant, rules: EventRules) -> tuple[EventState, list[Action]]:
    """End every open event now (shutdown). Pending activity is dropped."""
    actions: list[Action] = []
    if state.motion is not None:
        _end(state.motion, "shutdown", rules.motion, actions)
    if state.object is not None:
        _end(state.object, "shutdown", rules.object, actions)
    return replace(state, motion=None, motion_pending=None, object=None, object_pending=None), actions


def close_interrupted(payload: dict, rules: EventRules) -> list[Action]:
    """The closing actions of an event the node left open when it died (power cut, crash),
    from the last message it had recorded: an ``end`` with ``end_reason: "interrupted"`` and
    the last activity known then as its end, the segments flagged, and (object events) the
    open-ended protection given its end. Pure."""
    start = datetime.fromisoformat(str(payload["start"]).replace("Z", "+00:00"))
    duration = max(0.0, float(payload.get("duration_s") or 0.0))
    last = start + _td(duration)
    end = {**payload, "phase": "end", "end": iso(last), "duration_s": round(duration, 2),
           "end_reason": "interrupted"}
    kind = payload.get("kind")
    person = kind == "object" and "person" in (payload.get("classes") or [])
    out: list[Action] = [PublishEvent(end),
                         MarkSegments(payload["id"], start, last, motion=True, person=person)]
    r = rules.object if kind == "object" else rules.motion
    if r.protect:
        out.append(ProtectClip(payload["id"], start - _td(r.pre_roll_s), last + _td(r.post_roll_s)))
    return out


def _new_id(state: EventState, kind: str, start: Instant) -> tuple[EventState, str]:
    """``<node>-<UTC start to the ms>Z-<kind letter><count since start>``."""
    n = state.counter + 1
    ms = start.utc.microsecond // 1000
    node = f"{state.node_id}-" if state.node_id else ""
    return replace(state, counter=n), f"{node}{start.utc:%Y%m%dT%H%M%S}{ms:03d}Z-{kind[0]}{n}"


def _step_motion(state: EventState, obs: Obs, now: Instant, r: Rules, out: list[Action]) -> EventState:
    ev = state.motion
    if ev is not None:
        if obs.motion:
            ev = replace(ev, last=now, box=_union(ev.box, obs.box))
        if now.mono - ev.last.mono >= r.quiet_s:
            _end(ev, "quiet", r, out)
            return replace(state, motion=None, motion_cooldown_until=ev.last.mono + r.cooldown_s)
        if now.mono - ev.start.mono >= r.max_s:
            _end(replace(ev, last=now), "max_duration", r, out)
            state = replace(state, motion=None, motion_cooldown_until=float("-inf"),
                            motion_pending=Track(now, now) if obs.motion else None)
            return _open_motion_if_due(state, now, r, obs, out)
        return replace(state, motion=ev)
    pend = state.motion_pending
    if obs.motion:
        pend = Track(pend.first, now) if pend is not None else Track(now, now)
    elif pend is not None and now.mono - pend.last.mono >= r.quiet_s:
        pend = None
    return _open_motion_if_due(replace(state, motion_pending=pend), now, r, obs, out)


def _open_motion_if_due(state: EventState, now: Instant, r: Rules, obs: Obs, out: list[Action]) -> EventState:
    pend = state.motion_pending
    if pend is None or pend.last.mono - pend.first.mono < r.min_s or now.mono < state.motion_cooldown_until:
        return state
    start = pend.first
    if start.mono < state.motion_cooldown_until:
        start = now
    state, eid = _new_id(state, "motion", start)
    ev = Open(eid, "motion", start, pend.last, classes=("motion",), label="motion", box=obs.box)
    out.append(PublishEvent(_payload(ev, "start")))
    if r.protect:
        out.append(ProtectClip(eid, start.utc - _td(r.pre_roll_s), None))
    return replace(state, motion=ev, motion_pending=None)


def _step_object(state: EventState, obs: Obs, now: Instant, r: Rules, out: list[Action]) -> EventState:
    ev = state.object
    if ev is None:
        if obs.seen:
            best = max(obs.seen, key=lambda s: s.score)
            pend = state.object_pending
            if pend is None or best.score >= pend.score:
                pend = best if pend is None else replace(best, first=min(pend.first, best.first, key=_mono))
            state = replace(state, object_pending=pend)
        pend = state.object_pending
        if pend is None:
            return state
        if now.mono - pend.at.mono >= r.quiet_s:
            return replace(state, object_pending=None)
        if now.mono < state.object_cooldown_until:
            return state
        start = pend.first if pend.first.mono >= state.object_cooldown_until else pend.at
        state, eid = _new_id(state, "object", start)
        ev = Open(eid, "object", start, pend.at, classes=(pend.label,), label=pend.label,
                  score=pend.score, box=pend.box, seq=pend.seq, snap_seq=pend.seq, updated_mono=now.mono)
        ev = _absorb(ev, obs.seen)
        out.append(PublishEvent(_payload(ev, "start")))
        out.append(TakeSnapshot(eid, ev.seq, ev.box or (0.0, 0.0, 1.0, 1.0), ev.label, ev.score, pend.at.utc))
        ev = replace(ev, snap_seq=ev.seq, dirty=False)
        if r.protect:
            out.append(ProtectClip(eid, start.utc - _td(r.pre_roll_s), None))
        return replace(state, object=ev, object_pending=None)
    if obs.seen:
        ev = _absorb(replace(ev, last=now), obs.seen)
    elif obs.held:
        ev = replace(ev, last=now)
    if now.mono - ev.last.mono >= r.quiet_s:
        _end(ev, "quiet", r, out)
        return replace(state, object=None, object_cooldown_until=ev.last.mono + r.cooldown_s)
    if now.mono - ev.start.mono >= r.max_s:
        _end(replace(ev, last=now), "max_duration", r, out)
        # Still there: the next sighting opens a new event at once (no cooldown).
        return replace(state, object=None, object_cooldown_until=float("-inf"))
    if ev.dirty and now.mono - ev.updated_mono >= r.update_s:
        out.append(PublishEvent(_payload(ev, "update")))
        ev = replace(ev, dirty=False, updated_mono=now.mono)
    return replace(state, object=ev)


def _absorb(ev: Open, seen: tuple[Sighting, ...]) -> Open:
    """Add sightings to an open object event: classes, best detection, 'dirty' for updates."""
    for s in seen:
        if s.label not in ev.classes:
            ev = replace(ev, classes=(*ev.classes, s.label), dirty=True)
        if s.score > ev.score:
            ev = replace(ev, score=s.score, box=s.box, label=s.label, seq=s.seq,
                         dirty=ev.dirty or s.score >= ev.score + 0.05)
    return ev


def _end(ev: Open, reason: str, r: Rules, out: list[Action]) -> None:
    if ev.kind == "object" and ev.seq != ev.snap_seq and ev.box is not None:
        out.append(TakeSnapshot(ev.id, ev.seq, ev.box, ev.label, ev.score, ev.last.utc))
    out.append(PublishEvent(_payload(ev, "end", reason)))
    person = ev.kind == "object" and "person" in ev.classes
    out.append(MarkSegments(ev.id, ev.start.utc, ev.last.utc, motion=True, person=person))
    if r.protect:
        out.append(ProtectClip(ev.id, ev.start.utc - _td(r.pre_roll_s), ev.last.utc + _td(r.post_roll_s)))


def _payload(ev: Open, phase: str, reason: str | None = None) -> dict:
    p: dict = {
        "id": ev.id,
        "kind": ev.kind,
        "phase": phase,
        "label": ev.label,
        "classes": list(ev.classes),
        "score": round(ev.score, 3) if ev.kind == "object" else None,
        "box": [round(v, 4) for v in ev.box] if ev.box is not None else None,
        "start": ev.start.iso(),
        "end": ev.last.iso() if phase == "end" else None,
        "duration_s": round(ev.last.mono - ev.start.mono, 2),
        "snapshot": ev.kind == "object",
    }
    if reason is not None:
        p["end_reason"] = reason
    return p


def _union(a: RelBox | None, b: RelBox | None) -> RelBox | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _mono(i: Instant) -> float:
    return i.mono


def _td(s: float) -> timedelta:
    return timedelta(seconds=s)
