"""The police post's overview of every node: one row each, worst first.

Built from the messages the station already receives (``status``, ``heartbeat``, ``event``);
:class:`Fleet` is pure state with an injected clock, so "silent" and "lost" are decided by
table-driven tests, not by waiting.

A node is:
  * ``LOST``    — its last will arrived (power cut, crash, network gone);
  * ``OFFLINE`` — it said goodbye (clean stop);
  * ``SILENT``  — online, but no heartbeat for 3 of its own heartbeat periods (the node states
    its period in every heartbeat; a node never heard beating counts from when it was seen);
  * ``FAULT``   — heartbeats arrive and list faults (camera, storage, retention...);
  * ``OK``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

#: Assumed heartbeat period of a node that has not told its own (the node default).
DEFAULT_PERIOD_S = 10.0

ORDER = {"LOST": 0, "SILENT": 1, "FAULT": 2, "OFFLINE": 3, "OK": 4, "?": 5}


@dataclass
class NodeView:
    node_id: str
    status: str = "?"
    reason: str = ""
    last_beat: float | None = None
    interval_s: float | None = None
    heartbeat: dict[str, Any] = field(default_factory=dict)
    last_event: dict[str, Any] | None = None
    events: int = 0
    first_seen: float = 0.0
    seen_events: dict[str, None] = field(default_factory=dict)  # insertion-ordered, bounded


class Fleet:
    """Thread: ``feed`` from the MQTT thread, ``rows`` from the display; guarded by a lock."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._nodes: dict[str, NodeView] = {}
        self._lock = threading.Lock()

    def feed(self, node_id: str, leaf: str, msg: dict[str, Any]) -> None:
        now = self._clock.monotonic()
        with self._lock:
            v = self._nodes.get(node_id)
            if v is None:
                v = self._nodes[node_id] = NodeView(node_id, first_seen=now)
            if leaf == "status":
                v.status, v.reason = str(msg.get("state", "?")), str(msg.get("reason", ""))
            elif leaf == "heartbeat":
                period = number(msg.get("heartbeat_s"))
                if period is not None and period > 0:
                    v.interval_s = period  # the node says its own period
                v.last_beat, v.heartbeat = now, msg
                if v.status == "?":
                    v.status = "online"
            elif leaf == "event" and msg.get("phase") == "start":
                key = str(msg.get("id"))
                if key in v.seen_events:  # at-least-once delivery: count each event once
                    return
                v.seen_events[key] = None
                while len(v.seen_events) > 512:
                    v.seen_events.pop(next(iter(v.seen_events)))
                v.last_event, v.events = msg, v.events + 1

    def state(self, v: NodeView, now: float) -> str:
        if v.status == "offline":
            return "LOST" if v.reason == "lost" else "OFFLINE"
        period = v.interval_s or DEFAULT_PERIOD_S
        since = v.last_beat if v.last_beat is not None else v.first_seen
        if now - since > 3 * period:  # online by its retained status, but not beating
            return "SILENT"
        if v.heartbeat.get("faults"):
            return "FAULT"
        return "OK" if v.status == "online" else "?"

    def rows(self) -> list[dict[str, Any]]:
        now = self._clock.monotonic()
        with self._lock:
            views = list(self._nodes.values())
        out = []
        for v in views:
            hb = v.heartbeat
            temps = [x for x in map(number, (hb.get("temperatures_c") or {}).values()) if x is not None] \
                if isinstance(hb.get("temperatures_c"), dict) else []
            faults = hb.get("faults") if isinstance(hb.get("faults"), dict) else \
                ({"?": str(hb["faults"])} if hb.get("faults") else {})
            daynight = hb.get("daynight") if isinstance(hb.get("daynight"), dict) else {}
            out.append({
                "node": v.node_id, "state": self.state(v, now),
                "beat_age_s": None if v.last_beat is None else round(now - v.last_beat, 1),
                "fps": number(hb.get("fps_out")), "mode": daynight.get("mode"),
                "disk_free_mb": number(hb.get("disk_free_mb")),
                "retention_days": number(hb.get("retention_days")),
                "temp_c": max(temps) if temps else None,
                "faults": faults, "events": v.events,
                "last_event": (v.last_event or {}).get("label") or (v.last_event or {}).get("kind"),
            })
        return sorted(out, key=lambda r: (ORDER.get(r["state"], 9), r["node"]))


def number(v: Any) -> float | None:
    """A number from a heartbeat field, or None for anything else: a bool, a string, NaN, an
    infinity or a magnitude no sensor reports (a 400-digit integer overflowed a float and broke
    every page that shows the fleet). Odd messages never crash a reader."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, int) and abs(v) > 10 ** 15:
        return None
    f = float(v)
    return f if math.isfinite(f) and abs(f) <= 1e15 else None


def render(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table for a terminal."""
    head = f"{'NODE':<16} {'STATE':<8} {'BEAT':>6} {'FPS':>5} {'MODE':<6} {'DISK MB':>8} {'DAYS':>6} " \
           f"{'TEMP':>5} {'EVENTS':>6}  FAULTS"
    lines = [head]
    for r in rows:
        def f(v: Any, fmt: str) -> str:
            return format(v, fmt) if isinstance(v, int | float) else "-"

        faults = "; ".join(f"{k}: {v}" for k, v in r["faults"].items()) if r["faults"] else ""
        lines.append(f"{r['node']:<16} {r['state']:<8} {f(r['beat_age_s'], '6.0f'):>6} "
                     f"{f(r['fps'], '5.1f'):>5} {r['mode'] or '-':<6} {f(r['disk_free_mb'], '8.0f'):>8} "
                     f"{f(r['retention_days'], '6.1f'):>6} {f(r['temp_c'], '5.0f'):>5} "
                     f"{r['events']:>6}  {faults}")
    return "\n".join(lines)
