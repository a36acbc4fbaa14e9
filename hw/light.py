"""Light sensors for day/night: a comparator module, an LDR + capacitor, or an ADC channel.

Each reads a brightness ``level`` from 0 (dark) to 1 (bright). Deciding day or night from it
(thresholds with hysteresis, a confirmation time) is the day/night controller's job
(:mod:`node.daynight`), not the sensor's. The gpiozero import is lazy (inside the GPIO-based
sensors); the IIO sensor needs no GPIO library at all. Built by :func:`hw.gpio.build_devices`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw.gpio_errors import GpioError


@dataclass(frozen=True, slots=True)
class LightReading:
    """``level``: 0 (dark) .. 1 (bright); ``raw``: the sensor's own value (pin state, ADC count)."""

    level: float
    raw: float


class LightSensor:
    """Base: ``read()`` returns a :class:`LightReading`. Cost and thread: see subclasses."""

    kind = "none"

    def level(self) -> tuple[float, float]:
        """(level 0..1, raw value)."""
        raise NotImplementedError

    def read(self) -> LightReading:
        level, raw = self.level()
        return LightReading(level, raw)

    def close(self) -> None:
        pass


class DigitalLightSensor(LightSensor):
    """A comparator module (LDR + LM393 with its own trim pot) giving one digital level.

    The module decides the threshold; ``dark_high`` is the level it outputs in the dark. The
    level is 0.0 or 1.0 (the module's trim pot sets where). Cost: one pin read.
    """

    kind = "digital"

    def __init__(self, pin: int, *, dark_high: bool = True, pin_factory: Any = None) -> None:
        from gpiozero import DigitalInputDevice

        # Push-pull module output: no internal pull, so active_state must be given.
        self._dev = DigitalInputDevice(pin, pull_up=None, active_state=dark_high,
                                       pin_factory=pin_factory)

    def level(self) -> tuple[float, float]:
        dark = bool(self._dev.is_active)
        return (0.0 if dark else 1.0), float(self._dev.pin.state)

    def close(self) -> None:
        self._dev.close()


class ChargingLightSensor(LightSensor):
    """LDR + capacitor on one pin, timed by gpiozero's ``LightSensor`` (no ADC needed).

    gpiozero keeps a background thread that discharges the capacitor and times its charge; the
    value is the mean of ``queue_len`` readings, each taking up to ``charge_limit_s``. Level 1 =
    charged at once (bright). Cheap for the caller (reads the queue's mean).
    """

    kind = "ldr"

    def __init__(self, pin: int, *, charge_limit_s: float, queue_len: int,
                 pin_factory: Any = None) -> None:
        from gpiozero import LightSensor as GZLightSensor

        self._dev = GZLightSensor(pin, queue_len=queue_len, charge_time_limit=charge_limit_s,
                                  pin_factory=pin_factory)

    def level(self) -> tuple[float, float]:
        v = float(self._dev.value)
        return v, v

    def close(self) -> None:
        self._dev.close()


class IIOLightSensor(LightSensor):
    """An ADC channel through the kernel's IIO driver (ADS1015/ADS1115, MCP3008 via the
    ``mcp320x`` overlay): a sysfs file such as ``.../iio:device0/in_voltage0_raw``.

    ``level = raw / full_scale`` (inverted when the divider puts the LDR on the low side). Cost:
    one small file read; thread: any.
    """

    kind = "iio"

    def __init__(self, path: str | Path, *, full_scale: float, invert: bool) -> None:
        self.path = Path(path)
        if full_scale <= 0:
            raise ValueError("ADC full scale must be > 0")
        self.full_scale, self.invert = full_scale, invert
        if not self.path.exists():
            raise GpioError(f"light sensor ADC channel {self.path} does not exist")

    def level(self) -> tuple[float, float]:
        raw = float(self.path.read_text().strip())
        level = min(1.0, max(0.0, raw / self.full_scale))
        return (1.0 - level if self.invert else level), raw
