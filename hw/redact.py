"""Credentials never leave the node in clear: ``scheme://user:password@host`` → ``user:***``.

An IP camera's URL carries its password (``rtsp://admin:PW@10.0.0.5/stream``); it must not
appear in a log line, a heartbeat, a ``diag`` reply or an error message. One function for
one URL, one for any text (FFmpeg quotes URLs inside its errors), one for a JSON-like object;
the node applies them where text leaves it (log handler, MQTT payloads), so a new message
cannot forget.

Thread: any. Cost: one regular-expression scan of strings that contain ``://``.
"""

from __future__ import annotations

import re
from typing import Any

# scheme://user:password@ (password: anything up to the last '@' before the host part)
_URL_CRED = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:/@'\"]*):(?P<pw>[^\s/'\"]*)@")

#: Keys whose value is a secret wherever they appear in an object.
SECRET_KEYS = frozenset({"password", "passwd", "secret", "token"})


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with the password replaced by ``***``."""
    if "://" not in text:
        return text
    return _URL_CRED.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def redact_url(spec: str) -> str:
    return redact_text(spec)


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like object with credentials in every string hidden and the values of
    :data:`SECRET_KEYS` masked (``***`` when set, ``""`` when empty)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: (("***" if v else v) if isinstance(k, str) and k.lower() in SECRET_KEYS
                    and isinstance(v, str) else redact_obj(v)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj
