"""The service's settings: a TOML file (``/etc/camnode/station.toml``), overridden by flags.

```toml
[broker]
host = "127.0.0.1"
port = 1883
prefix = "camnode"
username = "station-a"        # one station user per serve instance (ids are bound to users)
password_file = "/etc/camnode/station-a.password"
tls_ca = ""
client_id = "camnode-station-a"
session_expiry_h = 72         # the broker queues for an absent service this long
                              # (default 72; 0.05 = 3 min in a share group, see below)
share_group = ""              # several instances: the same group name on each

[archive]
db = "sqlite:////var/lib/camnode-station/archive.db"
media = "/var/lib/camnode-station/media"
```
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

ALONE_EXPIRY_H, SHARED_EXPIRY_H = 72.0, 0.05


class ConfigError(ValueError):
    """The config file or a flag is unusable; the message says which and why."""


@dataclasses.dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "camnode"
    username: str = ""
    password: str = ""
    password_file: str = ""
    tls_ca: str = ""
    client_id: str = "camnode-station"
    #: None: 72 h alone; in a share group 3 minutes — the broker keeps routing the group's share
    #: to a dead member's session until it expires, and the nodes resend what it swallowed
    session_expiry_h: float | None = None
    share_group: str = ""
    db: str = "sqlite:///var/camnode-station/archive.db"
    media: str = ""
    #: most messages written in one transaction, and the longest a message waits for company
    batch_max: int = 500
    batch_wait_s: float = 0.02
    #: how many unacknowledged QoS 1 messages the broker may have in flight to us at once
    receive_maximum: int = 1000

    def expiry_h(self) -> float:
        if self.session_expiry_h is not None:
            return self.session_expiry_h
        return SHARED_EXPIRY_H if self.share_group else ALONE_EXPIRY_H

    def media_dir(self) -> Path:
        if self.media:
            return Path(self.media)
        if self.db.startswith("sqlite:///"):
            return Path(self.db[len("sqlite:///"):]).parent / "media"
        return Path("var/camnode-station/media")

    def read_password(self) -> str:
        """From ``password_file`` ('-': stdin), else the config's ``password``, else the
        environment (``CAMNODE_MQTT_PASSWORD``) — the station tools' one mechanism."""
        from station.connect import StationError, read_password

        if not self.password_file and self.password:
            return self.password
        try:
            return read_password(self.password_file)
        except StationError as exc:
            raise ConfigError(str(exc)) from None


_SECTIONS = {
    "broker": ("host", "port", "prefix", "username", "password", "password_file", "tls_ca", "client_id",
               "session_expiry_h", "share_group", "receive_maximum"),
    "archive": ("db", "media", "batch_max", "batch_wait_s"),
}


def load(path: str | Path | None, overrides: dict[str, Any] | None = None) -> ServeConfig:
    """Read ``path`` (None: defaults only) and apply the non-None ``overrides``."""
    cfg = ServeConfig()
    types = {f.name: f.type for f in dataclasses.fields(ServeConfig)}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"config {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path}: not TOML: {exc}") from None
        for section, body in data.items():
            if section not in _SECTIONS or not isinstance(body, dict):
                raise ConfigError(f"config {path}: unknown section [{section}]")
            for key, value in body.items():
                if key not in _SECTIONS[section]:
                    raise ConfigError(f"config {path}: unknown setting {section}.{key}")
                want = {"int": int, "float": (int, float), "float | None": (int, float),
                        "str": str}[str(types[key])]
                if isinstance(value, bool) or not isinstance(value, want):
                    raise ConfigError(f"config {path}: {section}.{key} must be {types[key]}, got {value!r}")
                setattr(cfg, key, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(cfg, key, value)
    if not 1 <= cfg.port <= 65535:
        raise ConfigError(f"port must be 1..65535, got {cfg.port}")
    if cfg.session_expiry_h is None:
        cfg.session_expiry_h = SHARED_EXPIRY_H if cfg.share_group else ALONE_EXPIRY_H
    if cfg.session_expiry_h <= 0:
        raise ConfigError("session_expiry_h must be positive (the broker queues for the service)")
    if "/" in cfg.share_group or "+" in cfg.share_group or "#" in cfg.share_group:
        raise ConfigError(f"share_group must be a plain name, got {cfg.share_group!r}")
    return cfg
