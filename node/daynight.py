"""Day/night: when to switch to IR, as a pure decision, and applying it to the hardware.

The decision (:func:`decide`) is a pure function ``(state, reading, now) → (state, actions)``
so every schedule and flapping case is a row in a test table. Its inputs:

* ``light``: the light sensor's brightness 0..1 (best: it does not see our own IR);
* ``luma``: the mean of the lores luma 0..255 (no sensor fitted). While the IR light is on it
  brightens the scene itself, so leaving night needs ``luma_day_above`` — well above what
  entering night needed — or the node would flap at dusk;
* ``sun_elevation_deg``: from the node's position and the UTC time (only when the clock is
  synchronised). In ``auto`` mode the sun decides full day and full night on its own, and the
  sensor (else the picture, else the sun at ±3°) times the switch at dawn and dusk — see
  :func:`wanted_mode`; with ``source = "sun"`` the sun is the only input.

A change must hold for ``confirm_s`` (a passing headlight is not dawn) and the node stays at
least ``min_dwell_s`` in a mode. A technician override (``force``) wins until it expires.

Each switch emits, in order: IR-cut filter, IR light, camera tuning (colour/mono, exposure)
and a motion re-baseline, so the light jump raises no alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

DAY, NIGHT = "day", "night"


@dataclass(frozen=True)
class DayNightPolicy:
    source: str = "auto"  # auto | sensor | luma | sun | fixed-day | fixed-night
    light_night_below: float = 0.25
    light_day_above: float = 0.35
    luma_night_below: float = 40.0
    luma_day_above: float = 110.0
    sun_night_below_deg: float = -3.0
    sun_day_above_deg: float = 3.0
    #: ``auto``: the sun alone decides above/below these elevations (full day, full night)
    auto_day_above_deg: float = 6.0
    auto_night_below_deg: float = -6.0
    latitude: float | None = None
    longitude: float | None = None
    confirm_s: float = 20.0
    min_dwell_s: float = 120.0
    ir_brightness: float = 1.0


@dataclass(frozen=True)
class Reading:
    light: float | None = None
    luma: float | None = None
    utc: datetime | None = None


@dataclass(frozen=True)
class State:
    mode: str = DAY
    since: float = -1e18
    pending: str | None = None
    pending_since: float = 0.0
    force: str | None = None
    force_until: float = 0.0
    reason: str = "start"
    switches: int = 0


@dataclass(frozen=True)
class SetIRCut:
    night: bool


@dataclass(frozen=True)
class SetIR:
    on: bool
    brightness: float = 1.0


@dataclass(frozen=True)
class TuneCamera:
    night: bool


@dataclass(frozen=True)
class Rebaseline:
    reason: str


@dataclass(frozen=True)
class Switched:
    mode: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


Action = SetIRCut | SetIR | TuneCamera | Rebaseline | Switched


def solar_elevation_deg(utc: datetime, latitude: float, longitude: float) -> float:
    """Sun elevation above the horizon (NOAA's approximation, ±0.5° — plenty for dusk/dawn).

    Works at any latitude (no sunrise/sunset needed, so no polar-day exception).
    """
    doy = utc.timetuple().tm_yday
    hour = utc.hour + utc.minute / 60 + utc.second / 3600
    g = 2 * math.pi / 365 * (doy - 1 + (hour - 12) / 24)
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    eqtime = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
                       - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g))
    true_solar_min = hour * 60 + eqtime + 4 * longitude
    ha = math.radians(true_solar_min / 4 - 180)
    lat = math.radians(latitude)
    cos_zen = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)
    return 90 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zen))))


def wanted_mode(policy: DayNightPolicy, current: str, r: Reading) -> tuple[str, str]:
    """The mode the light asks for (with hysteresis around ``current``) and why.

    ``auto`` combines the three inputs, each where it is right (docs/hardware.md, "Day/night"):
    the sun alone decides full day (elevation >= ``auto_day_above_deg``: an overcast or dark
    picture is still day) and full night (<= ``auto_night_below_deg``: a street lamp or
    headlights are not day); between them — dawn and dusk — the light sensor decides, a failed
    or missing sensor hands over to the picture's brightness, and without a picture the sun at
    ±3° does. Without a trusted clock (``utc`` None) the sun is unknown: sensor, else picture.
    """
    src = policy.source
    if src == "fixed-day":
        return DAY, "fixed"
    if src == "fixed-night":
        return NIGHT, "fixed"
    el = _sun_elevation(policy, r) if src in ("auto", "sun") else None
    if src == "auto" and el is not None:
        if el >= policy.auto_day_above_deg:
            return DAY, f"sun {el:.1f}° (full day)"
        if el <= policy.auto_night_below_deg:
            return NIGHT, f"sun {el:.1f}° (after dusk)"
    if src in ("auto", "sensor") and r.light is not None:
        return _hysteresis(current, r.light, policy.light_night_below, policy.light_day_above,
                           f"light {r.light:.2f}")
    if src in ("auto", "luma") and r.luma is not None:
        return _hysteresis(current, r.luma, policy.luma_night_below, policy.luma_day_above,
                           f"luma {r.luma:.0f}")
    if el is not None:
        return _hysteresis(current, el, policy.sun_night_below_deg, policy.sun_day_above_deg,
                           f"sun {el:.1f}°")
    return current, ""


def _sun_elevation(policy: DayNightPolicy, r: Reading) -> float | None:
    if policy.latitude is None or policy.longitude is None or r.utc is None:
        return None
    return solar_elevation_deg(r.utc, policy.latitude, policy.longitude)


def _hysteresis(current: str, value: float, night_below: float, day_above: float,
                why: str) -> tuple[str, str]:
    if current == DAY:
        return (NIGHT, why) if value < night_below else (DAY, "")
    return (DAY, why) if value > day_above else (NIGHT, "")


def _switch(state: State, mode: str, now: float, reason: str, policy: DayNightPolicy) -> tuple[State, list]:
    night = mode == NIGHT
    acts: list = [SetIRCut(night=night), SetIR(on=night, brightness=policy.ir_brightness if night else 0.0),
                  TuneCamera(night=night), Rebaseline(f"{mode}: {reason}"), Switched(mode, reason)]
    return replace(state, mode=mode, since=now, pending=None, reason=reason,
                   switches=state.switches + 1), acts


def decide(state: State, reading: Reading, now: float, policy: DayNightPolicy) -> tuple[State, list]:
    """One step of the controller. ``now`` is monotonic seconds. Pure."""
    if state.force is not None:
        if now < state.force_until:
            if state.mode != state.force:
                return _switch(state, state.force, now, "technician override", policy)
            return state, []
        state = replace(state, force=None)
    want, why = wanted_mode(policy, state.mode, reading)
    if want == state.mode:
        return (replace(state, pending=None) if state.pending else state), []
    if state.pending != want:
        return replace(state, pending=want, pending_since=now), []
    if now - state.pending_since < policy.confirm_s or now - state.since < policy.min_dwell_s:
        return state, []
    return _switch(state, want, now, why, policy)


def force(state: State, mode: str | None, now: float, duration_s: float) -> State:
    """Technician override: ``mode`` day/night for ``duration_s``; ``None`` returns to auto."""
    if mode is None:
        return replace(state, force=None, force_until=0.0)
    if mode not in (DAY, NIGHT):
        raise ValueError(f"mode must be 'day', 'night' or 'auto', got {mode!r}")
    return replace(state, force=mode, force_until=now + duration_s)


def policy_from_config(sec: Any) -> DayNightPolicy:
    """Build the pure policy from the ``[daynight]`` config section."""
    return DayNightPolicy(
        source=sec.source, light_night_below=sec.light_night_below, light_day_above=sec.light_day_above,
        luma_night_below=sec.luma_night_below, luma_day_above=sec.luma_day_above,
        latitude=sec.latitude, longitude=sec.longitude, confirm_s=sec.confirm_s,
        min_dwell_s=sec.min_dwell_s, ir_brightness=sec.ir_brightness)


class DayNightController:
    """Runs :func:`decide` and carries out its actions.

    ``devices``: the GPIO devices (``hw.gpio.Devices`` or None); ``camera``: the frame source,
    tuned through its optional ``set_night(bool)``; ``rebaseline``: the motion detector's
    re-baseline callable; ``vision_night``: told the mode at each switch (the analyzer's
    ``set_night``: motion uses its night sensitivity). A device that fails is reported in
    ``status()['error']`` and the others are still driven. Thread: ``step`` on the main
    thread; ``force`` from the MQTT command thread (guarded by a lock).
    """

    def __init__(self, policy: DayNightPolicy, clock: Any, *, devices: Any = None, camera: Any = None,
                 rebaseline: Any = None, vision_night: Any = None, override_max_s: float = 3600.0) -> None:
        import threading

        self.policy = policy
        self._clock = clock
        self.devices = devices
        self.camera = camera
        self.rebaseline = rebaseline
        self.vision_night = vision_night
        self.override_max_s = override_max_s
        self.state = State(since=clock.monotonic())
        self.last_reading: Reading | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def read(self, luma: float | None) -> Reading:
        light = None
        if self.devices is not None and getattr(self.devices, "light", None) is not None:
            try:
                light = self.devices.light.read().level
            except Exception as exc:  # a dead sensor must not stop day/night: fall back
                self.error = f"light sensor: {exc}"
            else:
                if self.error and self.error.startswith("light sensor"):
                    self.error = None  # the sensor reads again
        # an unsynchronised wall clock (no NTP, no RTC) would put the sun anywhere: not used
        return Reading(light=light, luma=luma, utc=self._clock.utc() if self._clock.synced() else None)

    def step(self, luma: float | None = None) -> list:
        reading = self.read(luma)
        now = self._clock.monotonic()
        with self._lock:  # decide and apply together: an override cannot interleave its pins
            self.last_reading = reading
            self.state, actions = decide(self.state, reading, now, self.policy)
            self.apply(actions)
        return actions

    def force(self, mode: str | None, minutes: float | None = None) -> dict[str, Any]:
        """Technician override (``mode`` day/night, or None/'auto' to release). Applies at once."""
        mode = None if mode in (None, "auto") else mode
        if minutes is not None and not 0 < minutes * 60 <= self.override_max_s:
            raise ValueError(f"an override lasts at most {self.override_max_s / 60:g} minutes, "
                             f"asked {minutes:g}")  # refused, never silently cut
        dur = (minutes or self.override_max_s / 60) * 60
        now = self._clock.monotonic()
        with self._lock:
            self.state = force(self.state, mode, now, dur)
            self.state, actions = decide(self.state, self.last_reading or Reading(), now, self.policy)
            self.apply(actions)
        return self.status()

    def apply(self, actions: list) -> None:
        """Carry out ``actions`` (caller holds the lock). Clears ``error`` when all succeed."""
        dev = self.devices
        failed = False
        for act in actions:
            try:
                if isinstance(act, SetIRCut) and dev is not None and dev.ircut is not None:
                    dev.ircut.set(act.night)
                elif isinstance(act, SetIR) and dev is not None and dev.ir is not None:
                    if act.on:
                        dev.ir.on(act.brightness)
                    else:
                        dev.ir.off()
                elif isinstance(act, TuneCamera):
                    if self.vision_night is not None:
                        self.vision_night(act.night)
                    if hasattr(self.camera, "set_night"):
                        self.camera.set_night(act.night)
                elif isinstance(act, Rebaseline) and self.rebaseline is not None:
                    self.rebaseline()
            except Exception as exc:
                failed = True
                self.error = f"{type(act).__name__}: {exc}"
        if actions and not failed:
            self.error = None

    def status(self) -> dict[str, Any]:
        s = self.state
        now = self._clock.monotonic()
        r = self.last_reading
        return {
            "mode": s.mode, "reason": s.reason, "switches": s.switches,
            "override": s.force, "override_left_s": round(max(0.0, s.force_until - now)) if s.force else 0,
            "light": None if r is None or r.light is None else round(r.light, 3),
            "luma": None if r is None or r.luma is None else round(r.luma, 1),
            "error": self.error,
        }
