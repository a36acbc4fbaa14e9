"""The search pages' cursor: the ``(start, id)`` of a row, as an opaque, signed URL token.

The token is itsdangerous's URL-safe signed serialization of ``[start, id]`` (HMAC-SHA256 of the
console's secret, salted for this one use): a link the console made pages on; anything else
(edited, truncated, from another console, or signed for another purpose) is refused with
:class:`CursorError` — never handed to the database. Pure functions; no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from itsdangerous import BadSignature, URLSafeSerializer

MAX_LEN = 400
_SALT = "search-cursor"


class CursorError(ValueError):
    """The cursor was not made by this console (tampered, truncated or malformed)."""


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALT, signer_kwargs={"digest_method": hashlib.sha256})


def encode(secret: str, key: tuple[datetime, str]) -> str:
    start, event_id = key
    return str(_serializer(secret).dumps([start.isoformat(), event_id]))


def decode(secret: str, token: str) -> tuple[datetime, str]:
    if not token or len(token) > MAX_LEN:
        raise CursorError("malformed")
    try:
        value = _serializer(secret).loads(token)
    except BadSignature:
        raise CursorError("signature") from None
    try:
        start_text, event_id = value
        start = datetime.fromisoformat(start_text)
    except (TypeError, ValueError):
        raise CursorError("malformed") from None
    if start.tzinfo is not None or not isinstance(event_id, str) or not event_id:
        raise CursorError("malformed")
    return start, event_id
