"""Day/night decisions as tables of (reading, time) → switches; the controller on mock GPIO."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from node.clock import FakeClock
from node.daynight import (
    DAY,
    NIGHT,
    DayNightController,
    DayNightPolicy,
    Reading,
    Rebaseline,
    SetIR,
    SetIRCut,
    State,
    Switched,
    decide,
    solar_elevation_deg,
)

P = DayNightPolicy(confirm_s=10, min_dwell_s=60)


def run(policy: DayNightPolicy, rows: list[tuple[float, Reading]], start: State | None = None) -> list:
    state = start or State(mode=DAY, since=-1000.0)
    switched = []
    for t, r in rows:
        state, acts = decide(state, r, t, policy)
        switched += [(t, a.mode) for a in acts if isinstance(a, Switched)]
    return switched


@pytest.mark.parametrize(("rows", "expected"), [
    # dusk on the sensor: dark must hold for confirm_s before the switch
    ([(0, Reading(light=0.5)), (5, Reading(light=0.1)), (10, Reading(light=0.1)), (15, Reading(light=0.1))],
     [(15, NIGHT)]),
    # a passing shadow shorter than confirm_s: nothing
    ([(0, Reading(light=0.1)), (5, Reading(light=0.6)), (12, Reading(light=0.1)), (20, Reading(light=0.6))],
     []),
    # inside the hysteresis band nothing changes either way
    ([(0, Reading(light=0.3)), (30, Reading(light=0.3)), (100, Reading(light=0.3))], []),
    # night then dawn; the dawn switch waits for min_dwell_s after the night switch
    ([(0, Reading(light=0.1)), (10, Reading(light=0.1)), (20, Reading(light=0.9)), (40, Reading(light=0.9)),
      (69, Reading(light=0.9)), (71, Reading(light=0.9))],
     [(10, NIGHT), (71, DAY)]),
])
def test_sensor_table(rows, expected):
    assert run(P, rows) == expected


def test_luma_needs_more_to_leave_night_than_to_enter_it():
    rows = [(0, Reading(luma=30)), (10, Reading(luma=30)),  # night
            (80, Reading(luma=90)), (100, Reading(luma=90)),  # IR-lit picture: still night
            (120, Reading(luma=130)), (131, Reading(luma=130))]  # real daylight
    assert run(P, rows) == [(10, NIGHT), (131, DAY)]


def test_sun_fallback_at_the_equator_like_saigon():
    p = DayNightPolicy(source="sun", latitude=10.78, longitude=106.70, confirm_s=0, min_dwell_s=0)
    noon = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)  # 12:00 local
    midnight = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)
    assert solar_elevation_deg(noon, 10.78, 106.70) > 60
    assert solar_elevation_deg(midnight, 10.78, 106.70) < -45  # lat + decl - 90 ≈ -57
    assert run(p, [(0, Reading(utc=midnight)), (1, Reading(utc=midnight))]) == [(1, NIGHT)]
    # polar night: no exception, just night
    assert solar_elevation_deg(datetime(2026, 12, 21, 12, tzinfo=UTC), 78.2, 15.6) < 0


def test_switch_orders_filter_light_and_rebaseline():
    s, acts = decide(State(mode=DAY, since=-1e9, pending=NIGHT, pending_since=0), Reading(light=0.0), 100, P)
    kinds = [type(a) for a in acts]
    assert kinds.index(SetIRCut) < kinds.index(SetIR) < kinds.index(Rebaseline)
    assert s.mode == NIGHT and SetIR(on=True, brightness=1.0) in acts


def test_controller_drives_mock_gpio_and_override_expires():
    from hw.gpio import GpioSpec, build_devices, make_pin_factory

    spec = GpioSpec(factory="mock", ir_pin=17, ircut_mode="level", ircut_pin=27, led_pin=22)
    factory = make_pin_factory("mock")
    devices = build_devices(spec, pin_factory=factory)
    clock = FakeClock()
    calls = []
    c = DayNightController(DayNightPolicy(source="luma", confirm_s=5, min_dwell_s=0), clock,
                           devices=devices, rebaseline=lambda: calls.append("rebaseline"))
    try:
        c.step(luma=20)
        clock.advance(6)
        c.step(luma=20)
        assert c.status()["mode"] == NIGHT and devices.ir.is_on and calls == ["rebaseline"]
        c.force("day", minutes=1)  # technician: IR off now, for a minute
        assert c.status()["mode"] == DAY and not devices.ir.is_on and c.status()["override"] == "day"
        clock.advance(30)
        c.step(luma=20)
        assert c.status()["mode"] == DAY
        clock.advance(31)  # override expired: night again after confirm_s
        c.step(luma=20)
        clock.advance(6)
        c.step(luma=20)
        assert c.status()["mode"] == NIGHT and c.status()["override"] is None
    finally:
        devices.close()
    assert factory.pin(17).state == 0  # IR pin left low (off) on close


# -- what "auto" means: sun + light sensor + picture (issue 8, item 17; docs/hardware.md) ------

SAIGON = DayNightPolicy(source="auto", latitude=10.78, longitude=106.70, confirm_s=0, min_dwell_s=0)
NOON = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)  # 12:00 local, sun ~80°
MIDNIGHT = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)  # 00:00 local, sun ~-57°
DUSK = datetime(2026, 6, 1, 11, 0, tzinfo=UTC)  # 18:00 local, sun ~+1.9°: inside the ±6° band
EARLY_DUSK = datetime(2026, 6, 1, 10, 55, tzinfo=UTC)  # sun ~+3.0°


@pytest.mark.parametrize(("case", "current", "reading", "expected"), [
    ("lamp-lit midnight, no sensor", DAY, Reading(luma=150, utc=MIDNIGHT), NIGHT),
    ("lamp-lit midnight stays night", NIGHT, Reading(luma=150, utc=MIDNIGHT), NIGHT),
    ("lamp shining on the sensor at midnight", DAY, Reading(light=0.8, luma=150, utc=MIDNIGHT), NIGHT),
    ("overcast noon, dark picture", DAY, Reading(luma=20, utc=NOON), DAY),
    ("overcast noon leaves a night it was forced into", NIGHT, Reading(luma=20, utc=NOON), DAY),
    ("overcast noon, sensor reads dark", DAY, Reading(light=0.1, luma=20, utc=NOON), DAY),
    ("sensor failed (no reading) at noon", DAY, Reading(light=None, luma=20, utc=NOON), DAY),
    ("dusk: the sensor times the switch", DAY, Reading(light=0.1, luma=120, utc=DUSK), NIGHT),
    ("dusk: sensor still bright, picture dark", DAY, Reading(light=0.6, luma=20, utc=DUSK), DAY),
    ("dusk: sensor failed, the picture decides", DAY, Reading(light=None, luma=30, utc=DUSK), NIGHT),
    ("dusk: sensor failed, picture still bright", DAY, Reading(light=None, luma=90, utc=DUSK), DAY),
    ("dusk: nothing but the sun, above +3°", DAY, Reading(utc=EARLY_DUSK), DAY),
    ("dusk: nothing but the sun, at -0.4°", DAY,
     Reading(utc=datetime(2026, 6, 1, 11, 25, tzinfo=UTC)), NIGHT),
    ("clock not synchronised: the picture", DAY, Reading(luma=150, utc=None), DAY),
    ("clock not synchronised: the sensor", DAY, Reading(light=0.1, luma=150, utc=None), NIGHT),
])
def test_auto_combines_sun_sensor_and_picture(case, current, reading, expected):
    from node.daynight import wanted_mode

    assert wanted_mode(SAIGON, current, reading)[0] == expected, case


class _Sensor:
    """The light sensor at the hardware edge: a level, or a read error."""

    def __init__(self) -> None:
        self.level: float | None = 0.9

    def read(self):
        if self.level is None:
            raise OSError("i2c read failed")
        return type("R", (), {"level": self.level})()


def test_a_day_under_a_street_lamp_with_a_sensor_that_fails_at_noon():
    """A whole day in 1-minute steps on an injected clock (no sleeping): the sensor works at
    dawn (bright from 05:30), fails from 10:00 to 20:00 local; the picture is lamp-lit (luma
    150) all night and overcast-dark (25) at noon. The node switches at dawn and dusk only."""
    clock = FakeClock(datetime(2026, 6, 1, 17, 0, tzinfo=UTC))  # local midnight
    sensor = _Sensor()
    devices = type("D", (), {"light": sensor, "ir": None, "ircut": None})()
    policy = DayNightPolicy(source="auto", latitude=10.78, longitude=106.70, confirm_s=20,
                            min_dwell_s=120)
    ctl = DayNightController(policy, clock, devices=devices)
    switches = []
    for minute in range(24 * 60):
        local_h = (minute / 60) % 24
        sensor.level = None if 10 <= local_h < 20 else (0.9 if 5.5 <= local_h < 18 else 0.05)
        luma = 25.0 if 11 <= local_h < 14 else 150.0
        for act in ctl.step(luma):
            if isinstance(act, Switched):
                switches.append((f"{int(local_h):02d}:{minute % 60:02d}", act.mode))
        if local_h == 12:
            assert ctl.status()["error"] == "light sensor: i2c read failed"
        clock.advance(60)
    # 00:02: the lamp-lit picture never held day against the sun (after 20 s of confirmation);
    # 05:31: dawn timed by the sensor inside the band (sun -0.7°);
    # 18:37: dusk, sensor failed and the lamp-lit picture says day: the sun at -6° decides
    assert switches == [("00:02", NIGHT), ("05:31", DAY), ("18:37", NIGHT)], switches
    assert ctl.status()["error"] is None  # the sensor reads again after 20:00


def test_controller_tells_vision_the_mode_at_each_switch():
    clock = FakeClock()
    told = []
    c = DayNightController(DayNightPolicy(source="luma", confirm_s=0, min_dwell_s=0), clock,
                           vision_night=told.append, rebaseline=lambda: told.append("rebaseline"))
    for luma in (20, 20, 200, 200):  # dark: night (seen twice: pending, then switched); bright: day
        c.step(luma=luma)
        clock.advance(1)
    assert told == [True, "rebaseline", False, "rebaseline"]
