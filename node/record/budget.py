"""The storage budget: from the card and the retention target to the encoder's settings.

What the card may spend per day::

    usable  = footage kept + free space - free-space floor        (what retention can use)
    budget  = (usable - protected and held footage) / retention target days

Protected footage (event clips, legal holds) counts first: it stays past the age limit, so the
continuous footage must fit in what is left. The floor is ``record.headroom_s`` of recording at
the budget rate (or ``record.min_free_mb``), solved together with the rate.

:class:`BudgetController` runs the :class:`~node.record.ratecontrol.RateLoop` for the node: a
:class:`RateMeter` (an encoder ``Output``) counts the bytes the encoder hands out, per light
phase and per tier; every ``budget.step_s`` the loop turns them into a knob, and the settings
go to the encoder (``reconfigure``, applied at the next keyframe). Its ``fault()`` is the
node's retention fault: only when even the quality floor cannot keep the target, with the
numbers and what would (a card, a resolution, a frame rate).

Thread: the meter's ``write`` on the encoder thread (a lock-free add under the GIL plus a small
lock per packet); ``tick``/``health``/``fault`` on the main thread.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hw.encode.rate import CRF_ENCODERS, RateSettings
from hw.media import EncodedPacket, StreamInfo
from node.record import capacity
from node.record.ratecontrol import DAY_S, Decision, Knob, RateLoop

log = logging.getLogger(__name__)

#: log2(bytes/s) per pixel/s at x = 0 (CRF 0 equivalent), measured by bench/bench_budget.py on
#: the shared clips at 1080p15 with libx264 ultrafast (docs/recording.md): day traffic, IR night.
CRF_PRIOR_PER_PX = {"day": -3.26, "night": -2.43}
#: A bitrate encoder writes about what it is asked: bytes/s = kbit/s x 125.
BITRATE_PRIOR = math.log2(125.0)


def daily_budget(kept: float, free: float, protected: float, target_days: float, *,
                 headroom_s: float, min_free: float) -> float:
    """Bytes per day the card may take so that ``target_days`` of footage fit (see module)."""
    room = kept + free - protected
    per_day = room / (target_days + headroom_s / DAY_S)  # floor = headroom_s at this rate
    if per_day / DAY_S * headroom_s < min_free:
        per_day = (room - min_free) / target_days
    return max(0.0, per_day)


def prior_for(kind: str, width: int, height: int, fps: float) -> dict[str, float]:
    if kind == "crf":
        lp = math.log2(width * height * fps)
        return {p: a + lp for p, a in CRF_PRIOR_PER_PX.items()}
    return {"day": BITRATE_PRIOR, "night": BITRATE_PRIOR}


def knob_for(encoder_name: str, cfg_budget: Any) -> Knob | None:
    """CRF for libx264, bitrate for the others; None for a passthrough (an IP camera's or
    picamera2's own stream: steered where that encoder is configured, see ``set_rate``)."""
    if encoder_name in CRF_ENCODERS:
        return Knob("crf", cfg_budget.crf_best, cfg_budget.crf_floor, 0.5)
    if encoder_name == "passthrough":
        return None
    return Knob("bitrate", cfg_budget.max_kbps, cfg_budget.min_kbps, 1.0)


class RateMeter:
    """An encoder ``Output`` counting bytes per (phase, x, boosted). ``take()`` empties it."""

    def __init__(self, phase_fn: Callable[[], str], clock: Any) -> None:
        self.phase_fn = phase_fn
        self.clock = clock
        self.x = 0.0
        self.boosted = False
        self._lock = threading.Lock()
        self._acc: dict[tuple[str, float, bool], list[float]] = {}
        self._last_mono: float | None = None

    def start(self, stream: StreamInfo) -> None:
        pass

    def stop(self) -> None:
        pass

    def write(self, packet: EncodedPacket) -> None:
        key = (self.phase_fn(), self.x, self.boosted)
        with self._lock:
            # a gap (camera reopened) is not recording time: at most 5 s per packet
            dt = 0.0 if self._last_mono is None else min(5.0, max(0.0, packet.mono - self._last_mono))
            self._last_mono = packet.mono
            a = self._acc.setdefault(key, [0.0, 0.0])
            a[0] += packet.size
            a[1] += dt

    def take(self) -> dict[tuple[str, float, bool], list[float]]:
        with self._lock:
            acc, self._acc = self._acc, {}
        return acc


@dataclass
class BudgetParams:
    """What the controller needs from the config (``[budget]``, ``[record]``, the stream)."""

    target_days: float
    headroom_s: float
    min_free: float
    gop_s: float
    peak_factor: float
    event_boost_crf: float
    step_s: float
    width: int
    height: int
    fps: float


class BudgetController:
    """The node's budget: meter → loop → encoder settings, and the retention fault."""

    def __init__(self, params: BudgetParams, knob: Knob, clock: Any,
                 space_fn: Callable[[], tuple[float, float, float]],
                 apply_fn: Callable[[RateSettings], None] | None = None) -> None:
        """``space_fn() -> (kept bytes, free bytes, protected bytes)`` of the store."""
        self.p = params
        self.knob = knob
        self.clock = clock
        self.space_fn = space_fn
        self.apply_fn = apply_fn
        # the event tier in x: n CRF steps better, or the same factor 2**(n/6) of bitrate
        boost = params.event_boost_crf / 6.0
        self.loop = RateLoop(knob, prior_for(knob.kind, params.width, params.height, params.fps),
                             step_s=params.step_s, boost=boost)
        self.meter: RateMeter | None = None
        self._boost_on = False
        self.decision: Decision | None = None
        #: (kept, free, protected) bytes at the last plan
        self.space: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.settings = self.settings_for(self.loop.x_now, boosted=False, budget_bpd=None)

    def budget_bytes_per_day(self) -> float:
        self.space = self.space_fn()
        kept, free, protected = self.space
        return daily_budget(kept, free, protected, self.p.target_days, headroom_s=self.p.headroom_s,
                            min_free=self.p.min_free)

    def settings_for(self, x: float, *, boosted: bool, budget_bpd: float | None) -> RateSettings:
        if budget_bpd is None:
            budget_bpd = self.budget_bytes_per_day()
        avg_kbps = max(16, int(budget_bpd / DAY_S * 8 / 1000))
        cap = max(64, int(avg_kbps * self.p.peak_factor))
        xb = x + (self.loop.boost if boosted else 0.0)
        if self.knob.kind == "crf":
            return RateSettings(avg_kbps, self.p.gop_s, crf=max(0.0, self.knob.q(xb)),
                                maxrate_kbps=cap, bufsize_kbps=2 * cap)
        kbps = max(16, int(self.knob.q(xb)))
        return RateSettings(kbps, self.p.gop_s, None, max(cap, kbps), 2 * max(cap, kbps))

    def _apply(self) -> None:
        s = self.settings_for(self.loop.x_now, boosted=self._boost_on,
                              budget_bpd=self.decision.budget_bytes_per_day if self.decision else None)
        if self.meter is not None:
            self.meter.x, self.meter.boosted = self.loop.x_now, self._boost_on
        if s != self.settings:
            self.settings = s
            if self.apply_fn is not None:
                self.apply_fn(s)

    def set_event(self, active: bool) -> None:
        """The event tier: better quality while an event is open (from the next keyframe)."""
        if active != self._boost_on and self.p.event_boost_crf > 0:
            self._boost_on = active
            self._apply()

    def plan_now(self, caution: float = 1.0) -> Decision:
        """Jump straight to the model's solution (at start: from the prior, no step limit),
        ``caution`` (in x: 1.0 = half the rate, 6 CRF) on the safe side: a prior measured on
        other footage must not overfill the first day; the loop then spends what it measures."""
        budget = self.budget_bytes_per_day()
        loop = self.loop
        aim = budget * (1.0 - loop.margin) / 2.0 ** caution
        x_star = math.log2(aim / loop.bytes_per_day(0.0)) if aim > 0 else self.knob.x_floor
        loop.x_now = self.knob.x(self.knob.q(min(self.knob.x_best, max(self.knob.x_floor, x_star))))
        d = loop.step(self.clock.monotonic(), budget, force=True)
        assert d is not None
        self.decision = d
        self._apply()
        return d

    def tick(self, force: bool = False) -> Decision | None:
        """Main thread, often (cheap when not due): every ``step_s`` the meter's bytes since the
        last step go to the loop (one observation per phase and tier: the loop's 24 h window
        holds a few dozen, not one per tick) and the loop steps."""
        now = self.clock.monotonic()
        if not force and not self.loop.due(now):
            return None
        if self.meter is not None:
            for (phase, x, boosted), (nbytes, secs) in self.meter.take().items():
                self.loop.observe(now, phase, secs, nbytes, x, secs if boosted else 0.0)
        d = self.loop.step(now, self.budget_bytes_per_day(), force=force)
        self.decision = d
        if d is not None:
            if d.changed:
                log.info("storage budget: %s %g (budget %.2f GB/day, predicted %.2f GB/day)",
                         self.knob.kind, d.q, d.budget_bytes_per_day / 1e9,
                         d.predicted_bytes_per_day / 1e9)
            self._apply()
        return d

    def fault(self) -> str | None:
        """The retention fault with the numbers, or None (the loop can keep the target)."""
        d = self.decision
        if d is None or d.fault is None:
            return None
        p = self.p
        kept, free, protected = self.space
        card_days = max(0.0, (kept + free - protected)) / max(1.0, d.floor_bytes_per_day)
        need = d.floor_bytes_per_day * p.target_days + protected + p.min_free
        short = d.budget_bytes_per_day / d.floor_bytes_per_day
        s = math.sqrt(short)
        w, h = int(p.width * s) // 2 * 2, int(p.height * s) // 2 * 2
        return (f"{d.fault}: the card holds ~{card_days:.1f} of {p.target_days:g} days; for the "
                f"target: storage of >= {need / 1e9:.0f} GB for footage (a "
                f"{capacity.card_size_for(need / (1 - capacity.FS_OVERHEAD) + 2e9)} card), or "
                f"resolution <= {w}x{h}, or fps <= {p.fps * short:.1f}")

    def health(self) -> dict[str, Any]:
        d = self.decision
        out: dict[str, Any] = {"knob": self.knob.kind, "q": self.loop.q_now,
                               "settings": self.settings.describe(), "event_tier": self._boost_on}
        if d is not None:
            out |= {"budget_gb_per_day": round(d.budget_bytes_per_day / 1e9, 3),
                    "predicted_gb_per_day": round(d.predicted_bytes_per_day / 1e9, 3),
                    "floor_gb_per_day": round(d.floor_bytes_per_day / 1e9, 3)}
        return out


def params_from_config(cfg: Any, width: int, height: int, fps: float) -> BudgetParams:
    b, rec = cfg.budget, cfg.record
    return BudgetParams(target_days=rec.max_age_days, headroom_s=rec.headroom_s,
                        min_free=rec.min_free_mb * 1024 * 1024, gop_s=cfg.encoder.gop_s,
                        peak_factor=b.peak_factor, event_boost_crf=b.event_boost_crf,
                        step_s=b.step_s, width=width, height=height, fps=fps)


def recorder_space(recorder: Any) -> Callable[[], tuple[float, float, float]]:
    """``space_fn`` over the recorder's index and card: (kept, free, protected) bytes."""

    def space() -> tuple[float, float, float]:
        tot = recorder.store.index.totals()
        try:
            free = recorder.retention.free_fn(recorder.root)
        except OSError:
            free = 0
        return float(tot["bytes"]), float(free), float(tot["protected_bytes"])

    return space


def build_budget(cfg: Any, width: int, height: int, fps: float, clock: Any, recorder: Any, *,
                 encoder_name: str = "libx264",
                 phase_fn: Callable[[], str] = lambda: "day") -> BudgetController | None:
    """The node's budget for a stream, or None in ``fixed`` mode or for a stream the node does
    not encode (passthrough). The first plan is made at once, from the prior: a card that
    cannot hold the target is reported from the first heartbeat on."""
    if cfg.budget.mode != "budget":
        return None
    knob = knob_for(encoder_name, cfg.budget)
    if knob is None:
        return None
    if knob.best >= knob.floor if knob.kind == "crf" else knob.best <= knob.floor:
        raise ValueError(f"budget: best quality {knob.best:g} must be better than the floor "
                         f"{knob.floor:g}")
    ctl = BudgetController(params_from_config(cfg, width, height, fps), knob, clock,
                           recorder_space(recorder))
    ctl.plan_now()
    ctl.meter = RateMeter(phase_fn, clock)
    ctl.meter.x = ctl.loop.x_now
    return ctl
