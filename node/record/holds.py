"""What a legal hold may be: a bounded range, an owner, an expiry (issue 8, item 26).

A hold keeps footage out of retention's reach. An unbounded one (year 1 to 9999) would keep
everything forever and quietly turn the ring buffer into a full card; a hold nobody owns cannot
be questioned; one that never ends cannot be undone. So every hold has:

* a range of at most :data:`MAX_RANGE_DAYS`, ending no later than :data:`MAX_FUTURE_S` from now
  (footage about to be recorded may be held; next year's may not);
* an ``owner`` (who asked: an officer, a case number, ``clip <request>``);
* an expiry, :data:`DEFAULT_DAYS` by default, at most :data:`MAX_DAYS`; retention releases
  expired holds, and ``release`` ends one sooner.

When protected footage alone fills the card, retention still has to delete some of it to keep
recording (see :mod:`node.record.retention`): that is reported as a fault, never silent.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

MAX_RANGE_DAYS = 7
MAX_FUTURE_S = 24 * 3600
DEFAULT_DAYS = 30.0
MAX_DAYS = 365.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.: -]{0,63}$")


class HoldError(ValueError):
    """A hold that may not be placed; the message says why (a command's error reply)."""


def check(name: str, owner: str, start: datetime, end: datetime, days: float,
          now: datetime) -> datetime:
    """Validate a hold; returns its expiry (UTC). Raises :class:`HoldError`."""
    if not _NAME.match(name):
        raise HoldError("name: 1-64 characters of letters, digits, spaces, '_', '.', ':' or '-'")
    if not owner.strip() or len(owner) > 64:
        raise HoldError("owner: who asks for the hold (1-64 characters), e.g. an officer or a case")
    if end <= start:
        raise HoldError("end must be after start")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise HoldError(f"a hold covers at most {MAX_RANGE_DAYS} days; place several for longer")
    if end > now + timedelta(seconds=MAX_FUTURE_S):
        raise HoldError(f"end is more than {MAX_FUTURE_S // 3600} h in the future")
    if not 0 < days <= MAX_DAYS:
        raise HoldError(f"days (how long the hold lasts) must be in (0, {MAX_DAYS:g}]")
    return now + timedelta(days=days)
