"""The search pages' cursor: the ``(start, id)`` of a row, as an opaque, signed URL token.

The token is ``base64url(start|id).mac`` with an HMAC-SHA256 of the console's secret: a link the
console made pages on; anything else (edited, truncated, from another console) is refused with
:class:`CursorError` — never handed to the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime

MAX_LEN = 400
_MAC_HEX = 24


class CursorError(ValueError):
    """The cursor was not made by this console (tampered, truncated or malformed)."""


def _mac(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), b"search-cursor|" + payload, hashlib.sha256).hexdigest()[:_MAC_HEX]


def encode(secret: str, key: tuple[datetime, str]) -> str:
    start, event_id = key
    payload = f"{start.isoformat()}|{event_id}".encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _mac(secret, payload)


def decode(secret: str, token: str) -> tuple[datetime, str]:
    if not token or len(token) > MAX_LEN or token.count(".") != 1:
        raise CursorError("malformed")
    body, mac = token.split(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("malformed") from None
    if not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        raise CursorError("signature")
    try:
        start_text, event_id = payload.decode().split("|", 1)
        start = datetime.fromisoformat(start_text)
    except ValueError:
        raise CursorError("malformed") from None
    if start.tzinfo is not None or not event_id:
        raise CursorError("malformed")
    return start, event_id
