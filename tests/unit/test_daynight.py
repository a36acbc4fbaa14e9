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
