"""The GPIO layer's error (its own module so :mod:`hw.gpio` and :mod:`hw.light` share it)."""


class GpioError(RuntimeError):
    """A GPIO device could not be opened or driven (pin busy, no pin factory for this board)."""
