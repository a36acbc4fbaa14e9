"""The node's configuration: one TOML file, sections with defaults, units and descriptions.

Every field has a default, so ``camnode run`` with no file runs the demo. Unknown keys and bad
values are rejected with :class:`ConfigError`, whose message names the file, the field path
and what was expected; the CLI turns it into exit code 2.

The sections are declared in :mod:`node.sections`; a feature that needs settings adds a
section class there and one line to :class:`Config`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from node.sections import (
    BudgetSection,
    CameraSection,
    DayNightSection,
    DetectSection,
    EncoderSection,
    GpioSection,
    LiveSection,
    LogSection,
    MotionSection,
    MqttSection,
    NodeSection,
    OverlaySection,
    RecordSection,
    StorageSection,
    check_source,
)

__all__ = ["Config", "ConfigError", "check_source", "config_from_dict", "example_toml", "load_config",
           "schema"]


class ConfigError(ValueError):
    """A config file or value is invalid. ``str()`` is the message for the installer."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


@dataclasses.dataclass(frozen=True)
class Config:
    node: NodeSection = dataclasses.field(default_factory=NodeSection)
    camera: CameraSection = dataclasses.field(default_factory=CameraSection)
    encoder: EncoderSection = dataclasses.field(default_factory=EncoderSection)
    storage: StorageSection = dataclasses.field(default_factory=StorageSection)
    record: RecordSection = dataclasses.field(default_factory=RecordSection)
    mqtt: MqttSection = dataclasses.field(default_factory=MqttSection)
    log: LogSection = dataclasses.field(default_factory=LogSection)
    daynight: DayNightSection = dataclasses.field(default_factory=DayNightSection)
    motion: MotionSection = dataclasses.field(default_factory=MotionSection)
    detect: DetectSection = dataclasses.field(default_factory=DetectSection)
    gpio: GpioSection = dataclasses.field(default_factory=GpioSection)
    overlay: OverlaySection = dataclasses.field(default_factory=OverlaySection)
    live: LiveSection = dataclasses.field(default_factory=LiveSection)
    budget: BudgetSection = dataclasses.field(default_factory=BudgetSection)

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


# ---------------------------------------------------------------------------- loading


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML file; ``None`` gives the defaults (the demo)."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(p), "", "file not found") from None
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(p), "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "", f"not valid TOML: {exc}") from None
    return config_from_dict(data, source=str(p))


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> Config:
    return _build(Config, data, source, "")


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(source, prefix.rstrip(".") or "(top level)",
                          f"expected a table, got {_tname(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        path = f"{prefix}{unknown[0]}"
        raise ConfigError(source, path, f"unknown key; expected one of: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}{name}"
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, source, path + ".")
        else:
            kwargs[name] = _coerce(typ, value, fields[name].metadata, source, path)
    built = cls(**kwargs)
    cross = getattr(built, "cross_check", None)  # rules between fields of one section
    problem = cross() if cross is not None else None
    if problem:
        raise ConfigError(source, f"{prefix}{problem[0]}", problem[1])
    return built


def _tname(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(v), type(v).__name__)


def _coerce(typ: Any, value: Any, meta: Any, source: str, path: str) -> Any:
    def fail(msg: str) -> typing.NoReturn:
        raise ConfigError(source, path, msg)

    origin = get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(typ) if a is not type(None)]
        if value is None:
            return None
        typ, origin = args[0], get_origin(args[0])
    if origin is list:
        (item,) = get_args(typ)
        if not isinstance(value, list):
            fail(f"expected an array, got {_tname(value)}")
        out = [_coerce(item, v, {}, source, f"{path}[{i}]") for i, v in enumerate(value)]
        _bounds(len(out), meta, fail, what="length")
        return _checks(out, meta, fail)
    if typ is bool:
        if not isinstance(value, bool):
            fail(f"expected true or false, got {_tname(value)}")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"expected an integer, got {_tname(value)} {value!r}")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(f"expected a number, got {_tname(value)} {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            fail("expected a finite number")
    elif typ is str:
        if not isinstance(value, str):
            fail(f"expected a string, got {_tname(value)}")
    elif not isinstance(value, typ):
        fail(f"expected {typ.__name__}, got {_tname(value)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        _bounds(value, meta, fail)
    return _checks(value, meta, fail)


def _bounds(value: float, meta: Any, fail: Any, what: str = "value") -> None:
    lo, hi = meta.get("minimum"), meta.get("maximum")
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    if lo is not None:
        if meta.get("exclusive_minimum") and value <= lo:
            fail(f"{what} must be > {lo}{unit}, got {value}")
        if value < lo:
            fail(f"{what} must be >= {lo}{unit}, got {value}")
    if hi is not None and value > hi:
        fail(f"{what} must be <= {hi}{unit}, got {value}")


def _checks(value: Any, meta: Any, fail: Any) -> Any:
    choices = meta.get("choices")
    if choices and value not in choices:
        fail(f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
    check = meta.get("check")
    if check is not None:
        msg = check(value)
        if msg:
            fail(msg)
    return value


# ---------------------------------------------------------------------------- schema


def schema() -> dict[str, Any]:
    """Every section and field: type, default, unit, bounds, description."""
    out: dict[str, Any] = {}
    hints = get_type_hints(Config)
    for f in dataclasses.fields(Config):
        cls = hints[f.name]
        sec_hints = get_type_hints(cls)
        fields = {}
        for sf in dataclasses.fields(cls):
            m = sf.metadata
            default = sf.default if sf.default is not dataclasses.MISSING else sf.default_factory()
            entry = {"type": _type_name(sec_hints[sf.name]), "default": default,
                     "description": m.get("description", "")}
            for k in ("unit", "minimum", "maximum", "choices"):
                if m.get(k) is not None:
                    entry[k] = list(m[k]) if k == "choices" else m[k]
            fields[sf.name] = entry
        out[f.name] = {"description": getattr(cls, "__section_description__", ""),
                       "fields": fields}
    return out


def _type_name(t: Any) -> str:
    if get_origin(t) is list:
        return f"array of {_type_name(get_args(t)[0])}"
    if get_origin(t) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(t) if a is not type(None))
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(t, str(t))


def example_toml() -> str:
    """A complete config file with every field at its default, described in comments."""
    lines = ["# camnode configuration: every field shown at its default.", ""]
    for name, sec in schema().items():
        lines.append(f"# {sec['description']}")
        lines.append(f"[{name}]")
        for fname, f in sec["fields"].items():
            unit = f" [{f['unit']}]" if f.get("unit") else ""
            lines.append(f"# {f['description']}{unit}")
            lines.append(f"{fname} = {_toml_value(f['default'])}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)
