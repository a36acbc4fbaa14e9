"""GPIO devices of a pole node: IR illuminator, IR-cut filter, light sensor, status LED.

Every device wraps gpiozero and takes the pin factory explicitly (no global default factory is
ever set): :func:`make_pin_factory` turns the ``[gpio] factory`` setting into one — the mock
factory in tests, lgpio on a Pi 5, gpiozero's own choice on a Pi 4 — and :func:`build_devices`
builds the configured devices from a :class:`GpioSpec` (plain values: ``hw`` never imports
``node``).

Safe state. "Safe" means IR off and the IR-cut filter in its *day* position (filter in front of
the sensor, colours right). :meth:`Devices.close` drives that state before releasing any pin, and
is registered with :mod:`atexit` so a normal exit or an unhandled exception gets it too. A process
killed outright (SIGKILL, OOM, power loss of the Pi only) cannot drive anything: the wiring in
``docs/hardware.md`` puts a pull-down on the IR driver gate and on a level-driven IR-cut input so
that an undriven pin *is* the safe state, and a latching (pulsed) IR-cut stays where it was until
the next start pulses it to day. :func:`apply_safe_state` does the same from a separate process
(a systemd ``ExecStopPost=`` hook).

The ``gpiozero`` import is lazy: importing this module touches no hardware.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hw.gpio_errors import GpioError
from hw.light import (
    ChargingLightSensor,
    DigitalLightSensor,
    IIOLightSensor,
    LightReading,
    LightSensor,
)

log = logging.getLogger(__name__)

__all__ = [
    "ChargingLightSensor", "Devices", "DigitalLightSensor", "GpioError",
    "GpioSpec", "IIOLightSensor", "IRCutFilter", "IRIlluminator", "LedCode", "LevelIRCut",
    "LightReading", "LightSensor", "PulsedIRCut", "StatusLED", "apply_safe_state",
    "build_devices", "led_code_for", "led_state_at", "make_pin_factory",
]

FACTORIES = ("auto", "none", "mock", "lgpio", "rpigpio", "pigpio", "native")
IRCUT_MODES = ("none", "level", "pulse")
LIGHT_MODES = ("none", "digital", "ldr", "iio")



@dataclass(frozen=True)
class GpioSpec:
    """What to build. Field names match the node's ``[gpio]`` config section one to one.

    Pins are BCM GPIO numbers; ``-1`` means "not fitted". Polarities say which *level* means
    the active state, so a board with an inverting transistor stage needs no code change.
    """

    factory: str = "auto"
    chip: int = -1
    ir_pin: int = -1
    ir_active_high: bool = True
    ir_pwm: bool = False
    ir_pwm_hz: float = 400.0
    ir_brightness: float = 1.0
    ircut_mode: str = "none"
    ircut_pin: int = -1
    ircut_pin_b: int = -1
    ircut_night_high: bool = True
    ircut_pulse_ms: float = 100.0
    light_mode: str = "none"
    light_pin: int = -1
    light_dark_high: bool = True
    light_iio_path: str = ""
    light_iio_full_scale: float = 4095.0
    light_iio_invert: bool = False
    light_charge_limit_s: float = 0.01
    light_queue_len: int = 5
    led_pin: int = -1
    led_active_high: bool = True

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> GpioSpec:
        """Build from a dict (``dataclasses.asdict(config.gpio)``). Unknown keys are an error,
        so the config section and this class cannot drift apart silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown GPIO settings: {', '.join(unknown)}")
        return cls(**values)


# ---------------------------------------------------------------------------- pin factory


def make_pin_factory(name: str, chip: int = -1) -> Any:
    """Return a gpiozero pin factory for ``name`` (see :data:`FACTORIES`), or ``None``.

    ``"none"`` returns ``None`` and means "no GPIO on this node" (a Jetson without a factory,
    a pole box whose IP camera switches its own IR). ``"auto"`` lets gpiozero try its own
    ordered list (lgpio, RPi.GPIO, pigpio, native) once, here, and raises :class:`GpioError`
    with the reason when none loads (on a PC). ``"mock"`` gives PWM-capable mock pins.
    ``chip`` selects the gpiochip for lgpio (``-1``: the library default, right for a Pi 4
    and for a Pi 5 on a current kernel).

    Cost: loads the library; a few ms. Thread: call once at start.
    """
    if name not in FACTORIES:
        raise ValueError(f"unknown pin factory {name!r}; expected one of {', '.join(FACTORIES)}")
    if name == "none":
        return None
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            return MockFactory(pin_class=MockPWMPin)
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory(chip=chip) if chip >= 0 else LGPIOFactory()
        if name == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if name == "pigpio":
            from gpiozero.pins.pigpio import PiGPIOFactory

            return PiGPIOFactory()
        if name == "native":
            from gpiozero.pins.native import NativeFactory

            return NativeFactory()
        from gpiozero import Device

        return Device._default_pin_factory()
    except Exception as exc:  # ImportError, BadPinFactory, OSError on a board without GPIO
        raise GpioError(f"pin factory {name!r} is not available on this machine: {exc}") from exc


# ---------------------------------------------------------------------------- IR illuminator


class IRIlluminator:
    """IR LED array behind a MOSFET or constant-current driver: on/off, or PWM brightness.

    ``active_high`` is the level that lights the LEDs. With ``pwm`` the pin is a software or
    hardware PWM at ``pwm_hz`` (a few hundred Hz is invisible to a rolling shutter at video
    exposure times and easy on the driver). Thread: any (gpiozero serialises pin writes).
    """

    def __init__(self, pin: int, *, active_high: bool = True, pwm: bool = False,
                 pwm_hz: float = 400.0, brightness: float = 1.0, pin_factory: Any = None) -> None:
        from gpiozero import DigitalOutputDevice, PWMOutputDevice

        self.pwm = pwm
        self.brightness = _unit(brightness, "brightness")
        if pwm:
            self._dev = PWMOutputDevice(pin, active_high=active_high, initial_value=0.0,
                                        frequency=pwm_hz, pin_factory=pin_factory)
        else:
            self._dev = DigitalOutputDevice(pin, active_high=active_high, initial_value=False,
                                            pin_factory=pin_factory)

    def on(self, brightness: float | None = None) -> None:
        """Light the LEDs (at ``brightness`` 0..1 with PWM; any value > 0 is full on without)."""
        level = self.brightness if brightness is None else _unit(brightness, "brightness")
        if self.pwm:
            self._dev.value = level
        else:
            self._dev.value = 1 if level > 0 else 0

    def off(self) -> None:
        self._dev.value = 0

    @property
    def value(self) -> float:
        """Current output, 0..1 (logical: 1 = fully lit, whatever the polarity)."""
        return float(self._dev.value)

    @property
    def is_on(self) -> bool:
        return self.value > 0

    def close(self) -> None:
        """Switch off, then release the pin."""
        try:
            if not self._dev.closed:
                self._dev.value = 0
        finally:
            self._dev.close()


def _unit(v: float, what: str) -> float:
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} must be within 0..1, got {v}")
    return float(v)


# ---------------------------------------------------------------------------- IR-cut filter


class IRCutFilter:
    """Base of the two IR-cut drivers. ``position`` is ``"day"``, ``"night"`` or ``"unknown"``.

    Day = the IR-blocking filter in front of the sensor (true colours); night = filter out so the
    sensor sees the IR illuminator.
    """

    position: str = "unknown"

    def day(self) -> None:
        raise NotImplementedError

    def night(self) -> None:
        raise NotImplementedError

    def set(self, night: bool) -> None:
        self.night() if night else self.day()

    def close(self) -> None:
        raise NotImplementedError


class LevelIRCut(IRCutFilter):
    """A filter (or its driver board) that follows one input level: one pin held high or low.

    ``night_high`` says which level moves the filter out (night). Inactive = day, and the
    wiring's pull resistor holds the inactive level when the pin is released.
    """

    def __init__(self, pin: int, *, night_high: bool = True, pin_factory: Any = None) -> None:
        from gpiozero import DigitalOutputDevice

        self._dev = DigitalOutputDevice(pin, active_high=night_high, initial_value=False,
                                        pin_factory=pin_factory)
        self.position = "day"

    def day(self) -> None:
        self._dev.off()
        self.position = "day"

    def night(self) -> None:
        self._dev.on()
        self.position = "night"

    def close(self) -> None:
        try:
            if not self._dev.closed:
                self.day()
        finally:
            self._dev.close()


class PulsedIRCut(IRCutFilter):
    """A latching filter moved by a current pulse through its coil, via an H-bridge (e.g. a
    DRV8833 or L9110S channel) with two inputs: A high pulses towards day, B high towards night.

    Both inputs are low between pulses (coil unpowered: a latching filter needs no hold
    current, and a coil left powered overheats). A and B are never high together (that would
    brake or, on some bridges, short the supply). ``pulse_s`` is typically 0.05–0.2 s; the
    call blocks for it — call from a worker thread, not from a frame loop. ``sleep`` is
    injected for tests.

    The position after a restart is unknown (the filter kept it), so the first call always
    pulses; later calls for the position already held do nothing.
    """

    def __init__(self, pin_a: int, pin_b: int, *, pulse_s: float = 0.1, pin_factory: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from gpiozero import DigitalOutputDevice

        if pin_a == pin_b:
            raise ValueError("pulsed IR-cut needs two different pins")
        if not 0.001 <= pulse_s <= 2.0:
            raise ValueError(f"pulse length must be within 1..2000 ms, got {pulse_s * 1000:g} ms")
        self.pulse_s = pulse_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self._a = DigitalOutputDevice(pin_a, initial_value=False, pin_factory=pin_factory)
        try:
            self._b = DigitalOutputDevice(pin_b, initial_value=False, pin_factory=pin_factory)
        except BaseException:
            self._a.close()
            raise
        self.position = "unknown"
        self.pulses = 0

    def _pulse(self, dev: Any, other: Any, position: str, force: bool = False) -> None:
        with self._lock:
            if self.position == position and not force:
                return
            other.off()
            dev.on()
            try:
                self._sleep(self.pulse_s)
            finally:
                dev.off()
            self.position = position
            self.pulses += 1

    def day(self) -> None:
        self._pulse(self._a, self._b, "day")

    def night(self) -> None:
        self._pulse(self._b, self._a, "night")

    def close(self) -> None:
        """Pulse to day (always: the recorded position may be stale), then release both pins."""
        try:
            if not self._a.closed and not self._b.closed:
                self._pulse(self._a, self._b, "day", force=True)
        finally:
            self._a.close()
            self._b.close()


# ---------------------------------------------------------------------------- status LED


class LedCode(StrEnum):
    """What the status LED shows; each code is a repeating (on_s, off_s) pattern."""

    OFF = "off"
    BOOTING = "booting"
    RECORDING = "recording"
    NO_BROKER = "no_broker"
    FAULT = "fault"


#: Patterns: tuples of (lit, seconds), repeated. Chosen to be told apart at a glance from the
#: street: fast flicker while booting, long on with a short gap while recording (a frozen LED
#: means a hung node), two blinks for "no broker", three for "fault".
LED_PATTERNS: dict[LedCode, tuple[tuple[bool, float], ...]] = {
    LedCode.OFF: ((False, 1.0),),
    LedCode.BOOTING: ((True, 0.1), (False, 0.1)),
    LedCode.RECORDING: ((True, 1.8), (False, 0.2)),
    LedCode.NO_BROKER: ((True, 0.2), (False, 0.2), (True, 0.2), (False, 1.4)),
    LedCode.FAULT: ((True, 0.2), (False, 0.2), (True, 0.2), (False, 0.2), (True, 0.2),
                    (False, 1.0)),
}


def led_code_for(*, booting: bool, fault: bool, broker_connected: bool, recording: bool) -> LedCode:
    """The code to show for the node's state; the most urgent wins (fault, then booting, then
    no broker, then recording). Pure: the heartbeat calls it and hands the result to
    :meth:`StatusLED.set_code`."""
    if fault:
        return LedCode.FAULT
    if booting:
        return LedCode.BOOTING
    if not broker_connected:
        return LedCode.NO_BROKER
    return LedCode.RECORDING if recording else LedCode.OFF


def led_state_at(code: LedCode, t: float) -> bool:
    """Whether the LED is lit ``t`` seconds after ``code`` started. Pure."""
    pattern = LED_PATTERNS[code]
    period = sum(d for _, d in pattern)
    phase = t % period
    for lit, d in pattern:
        if phase < d:
            return lit
        phase -= d
    return pattern[-1][0]


class StatusLED:
    """One LED showing a :class:`LedCode` blink pattern.

    ``tick(now)`` sets the pin for monotonic time ``now`` and writes it only on a change (the
    pin history is the pattern). ``start()`` runs a daemon thread ticking every 20 ms; tests
    call ``tick`` with their own times instead. Thread: ``set_code`` from any thread.
    """

    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        from gpiozero import DigitalOutputDevice

        self._dev = DigitalOutputDevice(pin, active_high=active_high, initial_value=False,
                                        pin_factory=pin_factory)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.code = LedCode.OFF
        self._since = monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_code(self, code: LedCode | str, now: float | None = None) -> None:
        code = LedCode(code)
        with self._lock:
            if code != self.code:
                self.code = code
                self._since = self._monotonic() if now is None else now
        self.tick(now)

    def tick(self, now: float | None = None) -> None:
        now = self._monotonic() if now is None else now
        with self._lock:
            lit = led_state_at(self.code, now - self._since)
            if not self._dev.closed and bool(self._dev.value) != lit:
                self._dev.value = lit

    @property
    def lit(self) -> bool:
        return bool(self._dev.value)

    def start(self, period_s: float = 0.02) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(period_s,),
                                            name="status-led", daemon=True)
            self._thread.start()

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self.tick()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        with self._lock:
            try:
                if not self._dev.closed:
                    self._dev.off()
            finally:
                self._dev.close()


# ---------------------------------------------------------------------------- the set


@dataclass
class Devices:
    """The node's GPIO devices (any may be ``None`` = not fitted).

    ``close()`` leaves the safe state (IR off first, then filter to day, LED off) and releases
    every pin; it is idempotent and registered with :mod:`atexit` while open.
    """

    factory: str
    ir: IRIlluminator | None = None
    ircut: IRCutFilter | None = None
    light: LightSensor | None = None
    led: StatusLED | None = None
    closed: bool = False

    def __post_init__(self) -> None:
        atexit.register(self.close)

    def safe_state(self) -> None:
        """IR off, filter to day. Does not release pins."""
        if self.ir is not None:
            self.ir.off()
        if self.ircut is not None:
            self.ircut.day()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        for name in ("ir", "ircut", "led", "light"):
            dev = getattr(self, name)
            if dev is None:
                continue
            try:
                dev.close()
            except Exception:  # keep going: the next device's safe state matters as much
                log.exception("closing GPIO %s failed", name)

    def describe(self) -> dict[str, object]:
        """State for diagnostics and the heartbeat. Cost: pin reads only (no ADC timing)."""
        return {
            "factory": self.factory,
            "ir": None if self.ir is None else {"on": self.ir.is_on, "value": self.ir.value},
            "ircut": None if self.ircut is None else self.ircut.position,
            "light": None if self.light is None else self.light.kind,
            "led": None if self.led is None else self.led.code.value,
        }


def build_devices(spec: GpioSpec, *, pin_factory: Any = None,
                  sleep: Callable[[float], None] = time.sleep,
                  monotonic: Callable[[], float] = time.monotonic) -> Devices:
    """Build every device ``spec`` configures, on ``pin_factory`` (made from ``spec.factory``
    when ``None``). Devices not configured (pin ``-1``, mode ``"none"``) are skipped, and no
    factory is loaded at all when nothing is configured (a PC running the demo).

    On any failure the devices already built are closed (safe state) and :class:`GpioError`
    names the one that failed. The IR-cut filter is moved to day and the IR switched off before
    returning. Thread: call once at start.
    """
    _validate(spec)
    wanted = (spec.ir_pin >= 0 or spec.ircut_mode != "none" or spec.led_pin >= 0
              or spec.light_mode in ("digital", "ldr"))
    factory_name = spec.factory
    if pin_factory is None and wanted:
        pin_factory = make_pin_factory(spec.factory, spec.chip)
        if pin_factory is None:
            log.info("GPIO factory 'none': IR, IR-cut, LED and GPIO light sensor are disabled")
    elif pin_factory is not None:
        factory_name = type(pin_factory).__name__
    devs = Devices(factory=factory_name)
    gpio_ok = pin_factory is not None
    step = "IR illuminator"
    try:
        if gpio_ok and spec.ir_pin >= 0:
            devs.ir = IRIlluminator(spec.ir_pin, active_high=spec.ir_active_high, pwm=spec.ir_pwm,
                                    pwm_hz=spec.ir_pwm_hz, brightness=spec.ir_brightness,
                                    pin_factory=pin_factory)
        step = "IR-cut filter"
        if gpio_ok and spec.ircut_mode == "level":
            devs.ircut = LevelIRCut(spec.ircut_pin, night_high=spec.ircut_night_high,
                                    pin_factory=pin_factory)
        elif gpio_ok and spec.ircut_mode == "pulse":
            devs.ircut = PulsedIRCut(spec.ircut_pin, spec.ircut_pin_b,
                                     pulse_s=spec.ircut_pulse_ms / 1000.0,
                                     pin_factory=pin_factory, sleep=sleep)
        step = "light sensor"
        if spec.light_mode == "iio":
            devs.light = IIOLightSensor(spec.light_iio_path, full_scale=spec.light_iio_full_scale,
                                        invert=spec.light_iio_invert)
        elif gpio_ok and spec.light_mode == "digital":
            devs.light = DigitalLightSensor(spec.light_pin, dark_high=spec.light_dark_high,
                                            pin_factory=pin_factory)
        elif gpio_ok and spec.light_mode == "ldr":
            devs.light = ChargingLightSensor(spec.light_pin, charge_limit_s=spec.light_charge_limit_s,
                                             queue_len=spec.light_queue_len,
                                             pin_factory=pin_factory)
        step = "status LED"
        if gpio_ok and spec.led_pin >= 0:
            devs.led = StatusLED(spec.led_pin, active_high=spec.led_active_high,
                                 pin_factory=pin_factory, monotonic=monotonic)
        step = "safe state"
        devs.safe_state()
    except Exception as exc:
        devs.close()
        if isinstance(exc, GpioError | ValueError):
            raise GpioError(f"{step}: {exc}") from exc
        raise GpioError(f"{step}: {type(exc).__name__}: {exc}") from exc
    return devs


def _validate(spec: GpioSpec) -> None:
    if spec.factory not in FACTORIES:
        raise GpioError(f"unknown pin factory {spec.factory!r}")
    if spec.ircut_mode not in IRCUT_MODES:
        raise GpioError(f"unknown IR-cut mode {spec.ircut_mode!r}")
    if spec.light_mode not in LIGHT_MODES:
        raise GpioError(f"unknown light sensor mode {spec.light_mode!r}")
    if spec.ircut_mode != "none" and spec.ircut_pin < 0:
        raise GpioError("IR-cut filter: ircut_pin is not set")
    if spec.ircut_mode == "pulse" and spec.ircut_pin_b < 0:
        raise GpioError("IR-cut filter: pulse mode needs ircut_pin_b (the H-bridge's second input)")
    if spec.light_mode in ("digital", "ldr") and spec.light_pin < 0:
        raise GpioError("light sensor: light_pin is not set")
    if spec.light_mode == "iio" and not spec.light_iio_path:
        raise GpioError("light sensor: light_iio_path is not set")
    pins = [p for p in (spec.ir_pin, spec.led_pin) if p >= 0]
    if spec.ircut_mode != "none":
        pins.append(spec.ircut_pin)
    if spec.ircut_mode == "pulse":
        pins.append(spec.ircut_pin_b)
    if spec.light_mode in ("digital", "ldr"):
        pins.append(spec.light_pin)
    dup = sorted({p for p in pins if pins.count(p) > 1})
    if dup:
        raise GpioError(f"GPIO pin(s) {', '.join(map(str, dup))} assigned to more than one device")


def apply_safe_state(spec: GpioSpec, *, pin_factory: Any = None) -> None:
    """Open the configured outputs, drive the safe state, close. For a separate process run after
    the node stopped or died (systemd ``ExecStopPost=``). Light sensor and LED are left alone
    (the LED is switched off)."""
    quiet = dataclasses.replace(spec, light_mode="none")
    build_devices(quiet, pin_factory=pin_factory).close()
