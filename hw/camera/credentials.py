"""An IP camera's password: kept in a file of its own, put into the camera's URL only when the
stream opens (``camera.password_file``). The configured URL names the user and never holds the
password, so neither the config, a command line nor a log line does. No I/O but the file's read.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from hw.camera.base import SourceError


def with_password(spec: str, password: str) -> str:
    """``rtsp://USER@HOST/...`` with ``password`` put in (percent-encoded): what ``av.open``
    gets; the configured URL, and so every log line, never holds it."""
    parts = urlsplit(spec)
    if not parts.username:
        raise ValueError("the camera URL names no user (rtsp://USER@HOST/...)")
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{quote(unquote(parts.username), safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def source_spec(source: str, password_file: str = "") -> str:
    """What to open for ``camera.source``: with ``camera.password_file``, the IP camera's URL
    with the password from that file put in. Read when the node opens its camera (at start: the
    source reconnects with what it was given, so a new password takes a restart of the node).
    :class:`SourceError` when the file cannot be read."""
    if not password_file:
        return source
    try:
        return with_password(source, Path(password_file).read_text().strip())
    except (OSError, ValueError) as exc:
        raise SourceError(f"camera.password_file {password_file}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
