"""The storage budget's control loop: measured bytes per day steer the encoder's quality.

The card holds ``budget`` bytes per day (see :mod:`node.record.budget`). The encoder has one
knob — libx264's CRF, or the bitrate of an encoder without CRF (``h264_v4l2m2m``, picamera2's
``H264Encoder``). The loop works in *log2 of the rate*, ``x``:

* CRF ``q``: ``x = -q / 6`` (x264: +6 CRF halves the rate, about);
* bitrate ``q`` kbit/s: ``x = log2(q)``.

For each hour of the day it keeps a model ``log2(bytes/s) = a_hour + x``: every observation
(bytes written over some seconds at a known ``x``) updates its hour's ``a`` by an exponential
average (once a day, then: a busy 8 o'clock, a quiet 3 o'clock, the IR grain of the night hours
each keep their own cost), so the model depends neither on where the knob was when it was
measured nor on the time of day it is now. Hours not seen yet take the costliest light phase's
model (``day``, ``night``, kept alongside from the same observations, with a prior from the
bench). The knob is then solved directly::

    bytes/day(x) = sum over the hours of 3,600 x 2**(a_h + x) x event_factor == budget x (1 - margin)

and clamped between the quality floor (the worst quality allowed) and the best quality worth
spending. No oscillation, by construction: the target ``x*`` comes from the model, not from an
integrator; the knob moves towards it by at most ``max_step`` per step and not at all inside a
dead band (wider towards spending more than towards saving), so a measurement wobble does not
move it and a real change (a grainier night, a
busier street, a fuller card) is followed in a bounded number of steps. A slope other than
the assumed one only means a few more steps (each corrects the error by the ratio of the
slopes).

A **retention fault** only when even the floor cannot reach the budget: the fault states the
bytes per day at the floor, the days the card then holds, and what would hold the target (a
card, a resolution, a frame rate).

Pure: :meth:`RateLoop.observe` and :meth:`RateLoop.step` take the injected clock's time; tests
drive whole simulated days without sleeping. Thread: the caller's (the node's main loop).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

DAY_S = 86_400.0


@dataclass(frozen=True)
class Knob:
    """The encoder's rate knob. ``best``/``floor``: the best quality worth spending and the
    worst allowed, in the knob's own unit (CRF, or kbit/s)."""

    kind: str  # "crf" | "bitrate"
    best: float
    floor: float
    #: knob resolution (CRF steps of 0.5; whole kbit/s)
    quantum: float = 0.5

    def x(self, q: float) -> float:
        return -q / 6.0 if self.kind == "crf" else math.log2(q)

    def q(self, x: float) -> float:
        raw = -6.0 * x if self.kind == "crf" else 2.0 ** x
        return round(raw / self.quantum) * self.quantum

    @property
    def x_best(self) -> float:
        return self.x(self.best)

    @property
    def x_floor(self) -> float:
        return self.x(self.floor)


@dataclass
class Decision:
    """One step's result. ``q`` is the knob to use; ``fault`` a sentence, or None."""

    t: float
    q: float
    budget_bytes_per_day: float
    predicted_bytes_per_day: float
    floor_bytes_per_day: float
    changed: bool
    fault: str | None = None

    @property
    def predicted_days_factor(self) -> float:
        """Budget over prediction: ≥ 1 keeps the target."""
        return self.budget_bytes_per_day / max(1.0, self.predicted_bytes_per_day)


@dataclass
class _Obs:
    t: float
    phase: str
    seconds: float
    boosted: float


@dataclass
class RateLoop:
    """See the module doc. ``prior``: ``a_phase`` before any measurement (from the bench table
    scaled to this stream's pixels per second, see :func:`node.record.budget.prior_for`)."""

    knob: Knob
    prior: dict[str, float]
    step_s: float = 3600.0
    max_step: float = 2.0 / 6.0  # in x: 2 CRF, or a factor 2**(1/3) of bitrate
    deadband: float = 0.75 / 6.0  # > one CRF quantum: no limit cycle between neighbours
    #: spending more (better quality) needs a clearer case than saving: the phases' models are
    #: measured at different knob positions, and a slope error then swings the solution by a
    #: step or so between day and night; the wider band up stops that swing from cycling
    up_deadband: float = 1.5 / 6.0
    alpha: float = 0.5
    margin: float = 0.03
    #: the event tier: footage during events is encoded this much better (in x)
    boost: float = 0.0
    start_q: float | None = None
    a: dict[str, float] = field(default_factory=dict)
    #: the model per hour of the day (monotonic time modulo 24 h; any fixed offset works)
    hours: dict[int, float] = field(default_factory=dict)
    #: share of an hour's surprise passed on to the other hours of its light phase
    spread: float = 0.4
    _hour_phase: dict[int, str] = field(default_factory=dict)
    x_now: float = 0.0
    _next_t: float | None = None
    _window: deque = field(default_factory=deque)
    last: Decision | None = None

    def __post_init__(self) -> None:
        self.a = dict(self.prior)
        q0 = self.start_q if self.start_q is not None else self.knob.floor
        self.x_now = self.knob.x(q0)

    @property
    def q_now(self) -> float:
        return self.knob.q(self.x_now)

    # -- measurement -------------------------------------------------------------
    def observe(self, t: float, phase: str, seconds: float, nbytes: float, x_used: float,
                boosted_s: float = 0.0) -> None:
        """``nbytes`` written over ``seconds`` in ``phase`` at knob ``x_used`` (``boosted_s`` of
        them in the event tier, encoded at ``x_used + boost``)."""
        if seconds <= 0:
            return
        self._window.append(_Obs(t, phase, seconds, boosted_s))
        while self._window and self._window[0].t < t - DAY_S:
            self._window.popleft()
        if nbytes <= 0:
            return
        # bytes at x_used for the plain part, 2**boost more for the boosted part
        eff = seconds + boosted_s * (2.0 ** self.boost - 1.0)
        a_obs = math.log2(nbytes / eff) - x_used
        old_phase = self.a.get(phase)
        self.a[phase] = a_obs if old_phase is None else old_phase + self.alpha * (a_obs - old_phase)
        h = int(((t - seconds / 2) % DAY_S) // 3600)
        old = self.hours.get(h)
        self._hour_phase[h] = phase
        if old is None:  # first sight of this hour: its measurement, no news for the others
            self.hours[h] = a_obs
            return
        surprise = a_obs - old
        self.hours[h] = old + self.alpha * surprise
        # What a known hour did not expect is news about the scene (grain tonight, a wrong
        # slope), not only about this hour: the other hours of its phase take ``spread`` of it
        # between them now instead of a day later. A regular daily pattern, once learnt, brings
        # no surprise, so it couples nothing; and the shares sum to ``spread`` (< 1 - alpha),
        # so a change is never over-learnt.
        others = [o for o, ph in self._hour_phase.items() if o != h and ph == phase]
        for other in others:
            self.hours[other] += self.spread * surprise / len(others)

    def shares(self) -> tuple[dict[str, float], float]:
        """Phase shares of the last 24 h and the event tier's share (priors before a day)."""
        total = sum(o.seconds for o in self._window)
        if total < 0.8 * DAY_S:
            phases = list(self.prior) or ["day"]
            return {p: 1.0 / len(phases) for p in phases}, (
                sum(o.boosted for o in self._window) / total if total else 0.0)
        out: dict[str, float] = {}
        for o in self._window:
            out[o.phase] = out.get(o.phase, 0.0) + o.seconds / total
        return out, sum(o.boosted for o in self._window) / total

    def bytes_per_day(self, x: float) -> float:
        """Bytes one day costs at ``x``: each hour of the day by its own model (an hour not
        seen yet by the costliest phase's), times the event tier's share."""
        _shares, ev = self.shares()
        unseen = max(self.a.values())
        per_day = sum(3600.0 * 2.0 ** (self.hours.get(h, unseen) + x) for h in range(24))
        return per_day * (1.0 + ev * (2.0 ** self.boost - 1.0))

    # -- control -----------------------------------------------------------------
    def due(self, t: float) -> bool:
        return self._next_t is None or t >= self._next_t

    def step(self, t: float, budget_bytes_per_day: float, *, force: bool = False) -> Decision | None:
        """Every ``step_s``: solve for the knob and move towards it. None when not due."""
        if not force and not self.due(t):
            return None
        self._next_t = t + self.step_s
        k = self.knob
        unit = self.bytes_per_day(0.0)
        aim = budget_bytes_per_day * (1.0 - self.margin)
        x_star = math.log2(aim / unit) if aim > 0 else k.x_floor
        x_star = min(k.x_best, max(k.x_floor, x_star))
        delta = x_star - self.x_now
        changed = False
        over = self.bytes_per_day(self.x_now) > budget_bytes_per_day
        if delta >= self.up_deadband or delta <= -self.deadband or (delta < 0 and over):
            step = max(-self.max_step, min(self.max_step, delta))
            new_x = k.x(k.q(self.x_now + step))
            changed = new_x != self.x_now
            self.x_now = new_x
        floor_bpd = self.bytes_per_day(k.x_floor)
        fault = None
        if floor_bpd > budget_bytes_per_day:
            fault = (f"even the quality floor ({k.kind} {k.floor:g}) writes "
                     f"{floor_bpd / 1e9:.2f} GB/day, over the budget of "
                     f"{budget_bytes_per_day / 1e9:.2f} GB/day")
        self.last = Decision(t, self.q_now, budget_bytes_per_day, self.bytes_per_day(self.x_now),
                             floor_bpd, changed, fault)
        return self.last
