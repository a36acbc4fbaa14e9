"""``cmd/live`` requests: parsing and the decision to start, refuse or stop (pure functions).

    {"stream": "sub"|"main", "minutes": N}   start (or extend/switch) a session
    {"stop": true}                           end the session now

Each refusal is one :class:`~node.link.router.CommandError` with a reason a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.link.router import CommandError, expect_keys

STREAMS = ("sub", "main")


@dataclass(frozen=True)
class Start:
    stream: str
    minutes: float


@dataclass(frozen=True)
class Stop:
    pass


def parse(args: dict, max_minutes: float, default_minutes: float = 5.0) -> Start | Stop:
    expect_keys(args, {"stream", "minutes", "stop"})
    if "stop" in args:
        if args["stop"] is not True or len(args) != 1:
            raise CommandError('stop is {"stop": true} alone')
        return Stop()
    stream = args.get("stream", "sub")
    if stream not in STREAMS:
        raise CommandError(f"unknown stream {stream!r}: 'sub' (small, for weak links) or 'main' "
                           "(the recorded stream)")
    minutes = args.get("minutes", default_minutes)
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 < minutes <= max_minutes:
        raise CommandError(f"minutes must be a number in (0, {max_minutes:g}], got {minutes!r}")
    return Start(str(stream), float(minutes))


def refusal(req: Start, *, configured: bool, month_bytes: int, cap_bytes: int, active: dict[str, str],
            has_pixels: bool) -> str | None:
    """Why a start request cannot be served now, or None.

    ``active``: ``{stream: requester}`` of running sessions. A second concurrent main-stream
    request is refused (one uplink carries one main stream); asking again for a running
    stream extends it (handled by the caller, not refused here).
    """
    if not configured:
        return "live view is not configured on this node (no [live] relay)"
    if cap_bytes and month_bytes >= cap_bytes:
        return (f"monthly live data cap reached: {month_bytes / 1e6:.1f} MB used of "
                f"{cap_bytes / 1e6:.1f} MB this month; live view resumes next month or with a higher cap")
    if req.stream == "sub" and not has_pixels:
        return "no sub-stream: this camera delivers encoded video only; ask for stream 'main'"
    if req.stream == "main" and "main" in active:
        return "the main stream is already live (one at a time); stop it first or watch that session"
    return None
