"""GPIO devices against gpiozero's mock factory: the pin state history is the evidence."""

from __future__ import annotations

import time

import pytest
from gpiozero.pins.mock import MockChargingPin, MockFactory, MockPWMPin

from hw.gpio import (
    LED_PATTERNS,
    Devices,
    GpioError,
    GpioSpec,
    IRIlluminator,
    LedCode,
    LevelIRCut,
    PulsedIRCut,
    StatusLED,
    apply_safe_state,
    build_devices,
    led_code_for,
    led_state_at,
    make_pin_factory,
)
from tests.stationproc import wait_until


@pytest.fixture
def factory() -> MockFactory:
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def states(factory: MockFactory, pin: int) -> list:
    return [s.state for s in factory.pin(pin).states]


def test_ir_on_off_active_high(factory):
    ir = IRIlluminator(17, pin_factory=factory)
    ir.on()
    ir.off()
    ir.on()
    ir.close()
    assert states(factory, 17) == [False, True, False, True, False]


def test_ir_active_low_inverts_levels(factory):
    ir = IRIlluminator(17, active_high=False, pin_factory=factory)
    assert factory.pin(17).state == 1  # off = high on an active-low driver
    ir.on()
    assert ir.is_on and factory.pin(17).state == 0
    ir.off()
    ir.close()
    # Driven high (off) before release; the released pin is the wiring's pull-up's business.
    # (mock pins start low; the last 0 is the release, not a drive)
    assert states(factory, 17) == [False, True, False, True, False]
    assert factory.pin(17).function == "input"


def test_ir_pwm_brightness_history(factory):
    ir = IRIlluminator(18, pwm=True, pwm_hz=400, brightness=0.5, pin_factory=factory)
    ir.on()
    ir.on(0.25)
    ir.on(1.0)
    ir.off()
    assert factory.pin(18).frequency == 400
    ir.close()
    assert states(factory, 18) == [0, 0.5, 0.25, 1.0, 0]
    assert factory.pin(18).frequency is None  # PWM stopped, pin released


def test_ir_rejects_brightness_out_of_range(factory):
    ir = IRIlluminator(18, pwm=True, pin_factory=factory)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        ir.on(1.5)
    ir.close()


def test_level_ircut(factory):
    cut = LevelIRCut(22, night_high=True, pin_factory=factory)
    cut.night()
    assert cut.position == "night"
    cut.day()
    cut.night()
    cut.close()
    assert states(factory, 22) == [False, True, False, True, False]
    assert cut.position == "day"


def test_pulsed_ircut_sequence_never_drives_both(factory):
    sleeps: list[float] = []
    log: list[tuple[bool, bool]] = []

    def sleep(s: float) -> None:
        # Record both pins while the pulse is held: exactly one may be high.
        sleeps.append(s)
        log.append((factory.pin(23).state, factory.pin(24).state))

    cut = PulsedIRCut(23, 24, pulse_s=0.12, pin_factory=factory, sleep=sleep)
    assert cut.position == "unknown"
    cut.day()      # first call always pulses: the position is unknown after a restart
    cut.day()      # already there: no pulse
    cut.night()
    cut.close()    # always pulses to day
    assert sleeps == [0.12, 0.12, 0.12]
    assert log == [(True, False), (False, True), (True, False)]
    assert states(factory, 23) == [False, True, False, True, False]
    assert states(factory, 24) == [False, True, False]
    assert cut.pulses == 3 and cut.position == "day"


def test_pulsed_ircut_pin_off_even_if_sleep_fails(factory):
    def bad_sleep(s):
        raise KeyboardInterrupt

    cut = PulsedIRCut(23, 24, pin_factory=factory, sleep=bad_sleep)
    with pytest.raises(KeyboardInterrupt):
        cut.night()
    assert factory.pin(24).state == 0
    cut._sleep = lambda s: None
    cut.close()


def test_pulsed_ircut_rejects_same_pin(factory):
    with pytest.raises(ValueError, match="two different pins"):
        PulsedIRCut(23, 23, pin_factory=factory)


def test_led_pattern_function():
    assert led_state_at(LedCode.BOOTING, 0.05) is True
    assert led_state_at(LedCode.BOOTING, 0.15) is False
    assert led_state_at(LedCode.BOOTING, 0.25) is True  # repeats
    assert led_state_at(LedCode.OFF, 12.3) is False
    for code, pattern in LED_PATTERNS.items():
        assert all(d > 0 for _, d in pattern), code


def _led_run(factory: MockFactory, code: LedCode, period: float, dt: float = 0.05) -> list:
    led = StatusLED(25, pin_factory=factory, monotonic=lambda: 0.0)
    factory.pin(25).clear_states()
    led.set_code(code, now=100.0)
    t = 100.0
    while t < 100.0 + period - 1e-9:
        t += dt
        led.tick(t)
    led.close()
    return states(factory, 25)


def test_status_led_codes_history(factory):
    # Each code over one period, sampled every 50 ms: the on/off edges are the blink count.
    assert _led_run(factory, LedCode.NO_BROKER, 2.0) == [False, True, False, True, False]
    factory.reset()
    assert _led_run(factory, LedCode.FAULT, 2.0) == [False, True, False, True, False, True, False]
    factory.reset()
    assert _led_run(factory, LedCode.RECORDING, 2.0) == [False, True, False]
    factory.reset()
    booting = _led_run(factory, LedCode.BOOTING, 0.8)
    assert booting[:5] == [False, True, False, True, False] and len(booting) == 9


def test_status_led_thread_blinks_and_close_turns_off(factory):
    import itertools

    ticks = itertools.count()
    led = StatusLED(25, pin_factory=factory, monotonic=lambda: next(ticks) * 0.05)  # 50 ms a tick
    led.set_code(LedCode.BOOTING)
    led.start(period_s=0.002)
    deadline = time.monotonic() + 5
    while states(factory, 25).count(True) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    led.close()
    hist = states(factory, 25)
    assert hist.count(True) >= 2 and hist[-1] == 0


def test_digital_light_sensor_thresholds(factory):
    spec = GpioSpec(light_mode="digital", light_pin=5, light_dark_high=True)
    devs = build_devices(spec, pin_factory=factory)
    pin = factory.pin(5)
    pin.drive_low()
    r = devs.light.read()
    assert (r.level, r.raw) == (1.0, 0.0)
    pin.drive_high()
    r = devs.light.read()
    assert (r.level, r.raw) == (0.0, 1.0)
    devs.close()


def test_ldr_light_sensor_bright_and_dark():
    factory = MockFactory(pin_class=MockChargingPin)
    spec = GpioSpec(light_mode="ldr", light_pin=6, light_charge_limit_s=0.05, light_queue_len=1)
    devs = build_devices(spec, pin_factory=factory)
    try:
        # gpiozero samples on its own thread: each reading is waited for (up to 5 s), not slept on
        factory.pin(6).charge_time = 0.001  # bright: the capacitor charges at once
        wait_until(lambda: devs.light.read().level > 0.5, 5, 0.05)
        bright = devs.light.read()
        factory.pin(6).charge_time = 1.0    # dark: never charges within the limit
        wait_until(lambda: devs.light.read().level < 0.3, 5, 0.05)
        dark = devs.light.read()
    finally:
        devs.close()
    assert bright.level > 0.5
    assert dark.level < 0.3


def test_iio_light_sensor_thresholds(tmp_path):
    raw = tmp_path / "in_voltage0_raw"
    raw.write_text("3000\n")
    spec = GpioSpec(light_mode="iio", light_iio_path=str(raw), light_iio_full_scale=4000)
    devs = build_devices(spec)  # no GPIO pins wanted: no pin factory loaded at all
    assert devs.factory == "auto"
    readings = []
    for v in (3000, 1000, 700, 1000, 1300):
        raw.write_text(f"{v}\n")
        readings.append(devs.light.read())
    assert [r.level for r in readings] == pytest.approx([0.75, 0.25, 0.175, 0.25, 0.325])
    assert readings[0].level == pytest.approx(0.75) and readings[0].raw == 3000
    devs.close()


def test_iio_missing_path_is_clear(tmp_path):
    spec = GpioSpec(light_mode="iio", light_iio_path=str(tmp_path / "nope"))
    with pytest.raises(GpioError, match=r"light sensor: .*does not exist"):
        build_devices(spec)


FULL = GpioSpec(factory="mock", ir_pin=17, ir_pwm=True, ircut_mode="pulse", ircut_pin=23,
                ircut_pin_b=24, ircut_pulse_ms=50, led_pin=25, light_mode="digital", light_pin=5)


def test_build_devices_starts_safe_and_close_leaves_safe_state(factory):
    devs = build_devices(FULL, pin_factory=factory, sleep=lambda s: None)
    assert devs.ircut.position == "day" and not devs.ir.is_on
    devs.ir.on(0.8)
    devs.ircut.night()
    devs.led.set_code(LedCode.RECORDING, now=0.0)
    assert devs.describe()["ircut"] == "night"
    devs.close()
    devs.close()  # idempotent
    assert factory.pin(17).states[-1].state == 0
    assert states(factory, 23)[-2:] == [True, False]   # final pulse towards day
    assert factory.pin(24).states[-1].state == 0
    assert factory.pin(25).states[-1].state == 0
    # Pins are released: a new device can claim them.
    IRIlluminator(17, pwm=True, pin_factory=factory).close()


def test_build_failure_closes_what_was_built(factory):
    factory.pin(25, pin_class=MockPWMPin)
    from gpiozero import DigitalOutputDevice

    squatter = DigitalOutputDevice(25, pin_factory=factory)  # LED pin already in use
    with pytest.raises(GpioError, match="status LED"):
        build_devices(FULL, pin_factory=factory, sleep=lambda s: None)
    squatter.close()
    # The IR pin got released again (safe state, then closed).
    IRIlluminator(17, pwm=True, pin_factory=factory).close()


@pytest.mark.parametrize("change, message", [
    ({"ircut_mode": "pulse", "ircut_pin": 23}, "ircut_pin_b"),
    ({"ir_pin": 17, "led_pin": 17}, "pin\\(s\\) 17"),
    ({"light_mode": "ldr"}, "light_pin"),
    ({"factory": "bogus", "ir_pin": 3}, "unknown pin factory"),
])
def test_spec_errors_are_clear(factory, change, message):
    import dataclasses

    with pytest.raises(GpioError, match=message):
        build_devices(dataclasses.replace(GpioSpec(), **change), pin_factory=factory)


def test_factory_selection():
    assert make_pin_factory("none") is None
    assert isinstance(make_pin_factory("mock"), MockFactory)
    with pytest.raises(ValueError, match="unknown pin factory"):
        make_pin_factory("gpio9000")
    # No real GPIO on a CI machine: the error says which factory and why.
    with pytest.raises(GpioError, match="'native' is not available"):
        make_pin_factory("native")


def test_factory_none_disables_gpio_devices():
    devs = build_devices(GpioSpec(factory="none", ir_pin=17, led_pin=25))
    assert devs.ir is None and devs.led is None
    devs.close()


def test_apply_safe_state_from_another_process_view(factory):
    # A previous run left IR on and the filter out; the ExecStopPost hook restores safety.
    spec = GpioSpec(ir_pin=17, ircut_mode="level", ircut_pin=22, led_pin=25)
    apply_safe_state(spec, pin_factory=factory)
    assert factory.pin(17).states[-1].state == 0
    assert factory.pin(22).states[-1].state == 0


def test_spec_from_mapping_rejects_unknown():
    assert GpioSpec.from_mapping({"ir_pin": 4}).ir_pin == 4
    with pytest.raises(ValueError, match="ir_pn"):
        GpioSpec.from_mapping({"ir_pn": 4})


def test_devices_atexit_registration(factory):
    import atexit

    calls = []
    orig = atexit.register
    try:
        atexit.register = lambda f: calls.append(f) or f
        d = Devices(factory="mock")
    finally:
        atexit.register = orig
    assert calls == [d.close]
    d.close()


@pytest.mark.parametrize("state, code", [
    ({"booting": True, "fault": False, "broker_connected": False, "recording": False}, LedCode.BOOTING),
    ({"booting": True, "fault": True, "broker_connected": True, "recording": True}, LedCode.FAULT),
    ({"booting": False, "fault": False, "broker_connected": False, "recording": True},
     LedCode.NO_BROKER),
    ({"booting": False, "fault": False, "broker_connected": True, "recording": True},
     LedCode.RECORDING),
    ({"booting": False, "fault": False, "broker_connected": True, "recording": False}, LedCode.OFF),
])
def test_led_code_for_node_state(state, code):
    assert led_code_for(**state) is code
