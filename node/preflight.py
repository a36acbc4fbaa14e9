"""Checks of a config against this machine: the files, keys and mounts it names.

:mod:`node.config` checks what a config *says* (types, bounds, rules between fields); this module
checks what it *needs* from the machine, so that ``camnode config check`` and ``camnode run``
refuse the same configs, for the same reasons, before anything starts — one path used by both.
A problem names its field (``storage.path: ...``) and becomes exit code 2.

What a node can still live with (a signing key not provisioned yet) is a warning, not an error.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from node.config import Config, ConfigError

#: Virtual file systems: footage written there is not stored.
_VIRTUAL = ("/proc", "/sys", "/dev", "/run/user")


@dataclass(frozen=True)
class Findings:
    errors: list[ConfigError]
    warnings: list[str]


def examine(cfg: Config, source: str = "<config>", base_dir: str | None = None, *,
            need_model: bool = True) -> Findings:
    """Every machine-dependent problem of ``cfg``. ``base_dir``: where relative model paths
    start (the config file's directory). ``need_model``: a missing model is an error (the
    built-in defaults run motion-only instead)."""
    errors: list[ConfigError] = []
    warnings: list[str] = []

    def err(field: str, message: str) -> None:
        errors.append(ConfigError(source, field, message))

    _storage(cfg.storage.path, err)
    _signing_key(cfg.record.signing_key, err, warnings)
    m = cfg.mqtt
    if m.password_file:
        _secret_file("mqtt.password_file", m.password_file, err)
    if m.tls_ca:
        try:
            ssl.create_default_context(cafile=m.tls_ca)
        except FileNotFoundError:
            err("mqtt.tls_ca", f"{m.tls_ca}: no such file")
        except (OSError, ssl.SSLError, ValueError) as exc:
            err("mqtt.tls_ca", f"{m.tls_ca}: not a usable CA certificate ({exc})")
    if bool(m.tls_cert) != bool(m.tls_key) or (m.tls_cert and not m.tls_ca):
        err("mqtt.tls_cert", "tls_cert and tls_key go together, and with tls_ca")
    elif m.tls_cert:
        try:
            ssl.create_default_context().load_cert_chain(m.tls_cert, m.tls_key)
        except FileNotFoundError as exc:
            err("mqtt.tls_cert", f"{exc.filename}: no such file")
        except (OSError, ssl.SSLError, ValueError) as exc:
            err("mqtt.tls_cert", f"{m.tls_cert} / {m.tls_key}: not a usable certificate and key ({exc})")
    if cfg.detect.enabled and cfg.motion.enabled:
        base = Path(base_dir) if base_dir else Path.cwd()
        for field in ("model", "labels"):
            p = base / getattr(cfg.detect, field)
            if not p.is_file():
                if need_model:
                    err(f"detect.{field}", f"{p}: no such file (set detect.enabled = false for "
                        "motion detection only)")
                else:
                    warnings.append(f"detect.{field}: {p} not found: motion detection only")
    if cfg.live.relay and cfg.live.password_file:  # (the push reads it only when a session starts:
        _secret_file("live.password_file", cfg.live.password_file, err)  # hours after a bad boot)
    _rtsp_server_password(cfg.live.serve_port, cfg.live.serve_password_file, err)
    _camera_password(cfg.camera.source, cfg.camera.password_file, err)
    src = cfg.camera.source
    if _is_local_file(src) and not Path(src.removeprefix("file://")).is_file():
        err("camera.source", f"{src}: no such file")
    return Findings(errors, warnings)


def require(cfg: Config, source: str = "<config>", base_dir: str | None = None, *,
            need_model: bool = True) -> list[str]:
    """Raise the first problem as :class:`ConfigError`; return the warnings."""
    found = examine(cfg, source, base_dir, need_model=need_model)
    if found.errors:
        raise found.errors[0]
    return found.warnings


def _storage(path: str, err) -> None:
    p = Path(path).resolve()
    if any(str(p) == v or str(p).startswith(v + "/") for v in _VIRTUAL):
        err("storage.path", f"{p} is on a virtual file system: footage would not be kept")
        return
    if p.exists() and not p.is_dir():
        err("storage.path", f"{p} is a file, not a directory")
        return
    probe = p
    while not probe.exists():  # the node creates the directory: its nearest parent must allow it
        probe = probe.parent
    if not probe.is_dir():
        err("storage.path", f"{probe} is a file, not a directory")
        return
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except OSError as exc:
        err("storage.path", f"{probe}: {exc.strerror or exc}")
        return
    if read_only:
        err("storage.path", f"{probe} is on a read-only file system")
    elif not os.access(probe, os.W_OK | os.X_OK):
        err("storage.path", f"{probe} is not writable by this user")


def _secret_file(field: str, path: str, err) -> str:
    """A password file must be there to read, and hold something; returns what it holds."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        err(field, f"{path}: {exc.strerror or exc}")
        return ""
    except UnicodeDecodeError:
        err(field, f"{path} is not text")
        return ""
    if not text:
        err(field, f"{path} is empty")
    return text


def _camera_password(source: str, path: str, err) -> None:
    """An IP camera's password comes from its own file, into a URL that names the user."""
    if not path:
        return
    parts = urlsplit(source)
    if parts.scheme not in ("rtsp", "rtsps", "http", "https"):
        err("camera.password_file",
            f"only for an IP camera (rtsp://USER@HOST/...), not {parts.scheme or source!r}")
    elif not parts.username or parts.password is not None:
        err("camera.password_file", "camera.source must name the user and no password "
            "(rtsp://USER@HOST/...): the password comes from this file")
    _secret_file("camera.password_file", path, err)


#: shortest password the node's own RTSP server accepts (provisioning writes 32+ characters)
MIN_SERVE_PASSWORD = 16


def _rtsp_server_password(port: int, path: str, err) -> None:
    """The node's own RTSP server listens on the LAN: never without a real password."""
    if not port:
        return
    field = "live.serve_password_file"
    if not path:
        err(field, "required when live.serve_port is set (the RTSP server plays to no one without it)")
        return
    try:
        password = Path(path).read_text().strip()
    except OSError as exc:
        err(field, f"{path}: {exc.strerror or exc}")
        return
    except UnicodeDecodeError:
        err(field, f"{path} is not text")
        return
    if len(password) < MIN_SERVE_PASSWORD or len(set(password)) < 4:
        err(field, f"{path}: the password must be at least {MIN_SERVE_PASSWORD} characters, not trivial")


def _signing_key(path: str, err, warnings: list[str]) -> None:
    if not path:
        return
    from node.record.integrity import KeyError_, Signer

    if not Path(path).exists():  # provisioning may write it later: recorded unsigned until then
        warnings.append(f"record.signing_key: {path} not provisioned yet: segments are not signed")
        return
    try:
        Signer.from_file(path)
    except KeyError_ as exc:
        err("record.signing_key", str(exc))
    except OSError as exc:
        err("record.signing_key", f"{path}: {exc.strerror or exc}")


def _is_local_file(source: str) -> bool:
    if source in ("synthetic", "demo", "picamera2", "csi") or source.startswith(("lavfi:", "/dev/")):
        return False
    return source.startswith("file://") or "://" not in source
