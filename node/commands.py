"""The node's commands (see :mod:`node.link.commands` for the envelope and error replies).

    help                               list commands
    diag                               full diagnostics (config with secrets masked, platform,
                                       encoder choice and rejections, camera, GPIO, queues...)
    ir        {"mode": "night"|"day"|"auto", "minutes": 30}
                                       technician override of day/night (IR on = night); it
                                       expires after ``minutes`` (capped by daynight.override_max_min)
    rebaseline                         reset the motion background now (after moving the camera)
    hold      {"start": UTC, "end": UTC, "id": ...}
                                       legal hold: protect footage of a range from retention
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from node.link.commands import CommandError, expect_keys

if TYPE_CHECKING:
    from node.app import Node


def _utc(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise CommandError(f"{name} must be an ISO 8601 UTC time string")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{name} {value!r} is not an ISO 8601 time") from None
    if ts.tzinfo is None:
        raise CommandError(f"{name} must carry a time zone (Z for UTC)")
    return ts.astimezone(UTC)


def register_node_commands(node: Node) -> None:
    r = node.commands

    def diag(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, set())
        return node.diagnostics.full()

    def ir(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, {"mode", "minutes"})
        mode = args.get("mode")
        if mode not in ("day", "night", "auto"):
            raise CommandError(f"mode must be 'night' (IR on), 'day' (IR off) or 'auto', got {mode!r}")
        minutes = args.get("minutes")
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int | float)
                                    or not 0 < minutes <= 24 * 60):
            raise CommandError("minutes must be a number in (0, 1440]")
        return node.daynight.force(mode, minutes)

    def rebaseline(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, set())
        if node.analyzer is None:
            raise CommandError("motion detection is not running")
        node.analyzer.rebaseline()
        return {"rebaselined": True}

    def hold(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, {"start", "end", "name"})
        start, end = _utc(args.get("start"), "start"), _utc(args.get("end"), "end")
        if end <= start:
            raise CommandError("end must be after start")
        name = str(args.get("name") or start.strftime("%Y%m%dT%H%M%SZ"))[:64]
        segments = node.recorder.hold(name, start, end)
        return {"hold": name, "segments": segments}

    r.register("diag", diag, "full diagnostics of this node")
    r.register("ir", ir, "IR override: {mode: night|day|auto, minutes}")
    r.register("rebaseline", rebaseline, "reset the motion background now")
    r.register("hold", hold, "protect footage of {start, end} (UTC) from deletion")
