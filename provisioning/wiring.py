"""GPIO pins of the documented wirings (docs/hardware.md), as ``[gpio]`` config for a node.

``pi4`` and ``pi5`` are the Raspberry Pi 40-pin wiring of docs/hardware.md (IR driver on
GPIO18 with PWM, latching IR-cut filter through a DRV8833 on GPIO23/24, LM393 light sensor
module on GPIO5, status LED on GPIO25); they differ in the pin factory (a Pi 5's RP1 needs
lgpio). ``none`` is a board without GPIO devices (Jetson, PC): day/night from the picture.
"""

from __future__ import annotations

_PI = {
    "ir_pin": 18, "ir_pwm": True,
    "ircut_mode": "pulse", "ircut_pin": 23, "ircut_pin_b": 24,
    "light_mode": "digital", "light_pin": 5,
    "led_pin": 25,
}

WIRINGS: dict[str, dict[str, object]] = {
    "pi4": {"factory": "auto", **_PI},
    "pi5": {"factory": "lgpio", **_PI},
    "none": {"factory": "none"},
}


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def gpio_toml(wiring: str) -> str:
    """The ``[gpio]`` section of ``wiring`` (a key of :data:`WIRINGS`)."""
    pins = WIRINGS[wiring]
    return "[gpio]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in pins.items())
