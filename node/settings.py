"""Machinery for declaring config sections: one field, one default, one description.

A section is a frozen dataclass whose fields are made with :func:`setting`. The loader in
:mod:`node.config` walks these declarations to validate TOML, to print the schema and to
write the documented example file, so a field's description lives in exactly one place.

Units go in the field name (``heartbeat_s``, ``bitrate_kbps``, ``min_free_mb``) and are
repeated in the metadata for the schema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

#: Validator: returns an error message for a bad value, or None.
Check = Callable[[Any], "str | None"]


def setting(
    default: Any,
    description: str,
    *,
    unit: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[Any, ...] | None = None,
    check: Check | None = None,
    exclusive_minimum: bool = False,
) -> Any:
    """Declare one config field.

    ``minimum``/``maximum`` bound numbers (and list lengths); ``choices`` restricts to a set;
    ``check`` is a pure function returning an error string or None. ``exclusive_minimum``
    makes ``minimum`` strict (``> 0`` rather than ``>= 0``).
    """
    meta = {
        "description": description,
        "unit": unit,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "check": check,
        "exclusive_minimum": exclusive_minimum,
    }
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(description: str) -> Callable[[type], type]:
    """Class decorator: a frozen dataclass with a description shown in the schema."""

    def wrap(cls: type) -> type:
        cls = dataclasses.dataclass(frozen=True, slots=False)(cls)
        cls.__section_description__ = description  # type: ignore[attr-defined]
        return cls

    return wrap
