"""The MQTT contract: topic tree and payload shapes, shared by node, station and provisioning.

Topics (``<p>`` = ``mqtt.topic_prefix``, ``<id>`` = ``node.id``)::

    <p>/<id>/status      retained, QoS 1  {"state": "online"|"offline", "utc", "version", "reason"}
                         "offline" with reason "lost" is the broker's last will (abrupt loss);
                         reason "shutdown" is a clean stop.
    <p>/<id>/heartbeat   QoS 0, every mqtt.heartbeat_s  (see HEARTBEAT_FIELDS)
    <p>/<id>/event       QoS 1  motion/person events (start, update, end)
    <p>/<id>/snapshot/<event id>  QoS 1  JPEG bytes of the event's best frame
    <p>/<id>/lost        QoS 1  durable messages the bounded outbox dropped (which, how many, why)
    <p>/<id>/cmd/<name>  to the node, QoS 1; reply on <p>/<id>/reply/<name>
    <p>/<id>/ack/event, ack/snapshot  to the node, QoS 1: the archive committed these
                         ({"id", "phase"} or {"acks": [...]}); only then the outbox row goes
    <p>/<id>/clip/<request>/<n>, .../done   an exported clip in chunks, then its manifest

Payloads are UTF-8 JSON objects; times are ISO 8601 UTC with a ``Z``. ``docs/mqtt.md`` is the
human version of this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1

#: Fields every heartbeat carries (more may follow; consumers ignore unknown fields).
#: ``heartbeat_s`` is the node's own period: the station's fleet view calls a node SILENT after
#: three of them. ``throttled`` (Pi only) and ``vision`` (analysis on) are sent when they apply.
HEARTBEAT_FIELDS = (
    "node_id", "version", "heartbeat_s", "uptime_s", "utc", "clock_synced", "fps_in", "fps_out",
    "frames_in", "frames_dropped", "encoder", "disk_free_mb", "retention_days", "cpu_load",
    "temperatures_c", "memory", "daynight", "recorder", "link", "faults",
)

#: Leaves a node publishes under ``<p>/<id>/``: the broker ACL that provisioning generates allows
#: a node exactly these (add a new leaf here, or the broker refuses it with PUBACK 135).
NODE_PUBLISHES = ("status", "heartbeat", "event", "snapshot/#", "lost", "reply/#", "clip/#")
#: Leaves a node reads under ``<p>/<id>/``: commands, and the station's archive acknowledgements.
NODE_SUBSCRIBES = ("cmd/#", "ack/#")

#: Largest payload the node accepts on a command topic.
MAX_COMMAND_BYTES = 16 * 1024


_PREFIX_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def check_prefix(prefix: str) -> str | None:
    """Why ``prefix`` cannot be a topic prefix (None: it can). One topic level of letters,
    digits, ``_``, ``-`` and ``.``: no MQTT wildcards (``#``, ``+``: no publish could match), no
    ``/`` (the station reads the first level as the prefix), no ``$`` (broker-reserved), not empty."""
    if not prefix:
        return "must not be empty"
    bad = sorted(set(prefix) - _PREFIX_CHARS)
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"contains {shown}: use one topic level of letters, digits, '_', '-' or '.'"
    if len(prefix) > 64:
        return "longer than 64 characters"
    return None


@dataclass(frozen=True)
class Topics:
    prefix: str
    node_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.node_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def heartbeat(self) -> str:
        return f"{self.base}/heartbeat"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def lost(self) -> str:
        return f"{self.base}/lost"

    def snapshot(self, event_id: str) -> str:
        return f"{self.base}/snapshot/{event_id}"

    def clip(self, request: str, part: str) -> str:
        """``part``: a chunk number, or ``done`` (the manifest and the outcome)."""
        return f"{self.base}/clip/{request}/{part}"

    def cmd(self, name: str = "+") -> str:
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        return f"{self.base}/reply/{name}"

    def ack(self, leaf: str = "#") -> str:
        """The station's archive acknowledgements to this node (``event``, ``snapshot``)."""
        return f"{self.base}/ack/{leaf}"

    def ack_key(self, topic: str, payload: bytes) -> str | None:
        """What an archive acknowledgement names for a durable message: ``event/<id>/<phase>``,
        ``snapshot/<id>``; None for anything the archive does not acknowledge."""
        if topic == self.event:
            try:
                p = json.loads(payload)
                return f"event/{p['id']}/{p['phase']}"
            except (ValueError, KeyError, TypeError):
                return None
        if topic.startswith(f"{self.base}/snapshot/"):
            return f"snapshot/{topic.rsplit('/', 1)[1]}"
        return None


def ack_keys(leaf: str, payload: dict[str, Any]) -> list[str]:
    """Keys named by an archive acknowledgement on ``ack/<leaf>``: ``{"id", "phase"}`` or a
    batch ``{"acks": [...]}``."""
    items = payload.get("acks") if isinstance(payload.get("acks"), list) else [payload]
    keys = []
    for a in items:
        if not isinstance(a, dict) or not isinstance(a.get("id"), str):
            continue
        if leaf == "event" and isinstance(a.get("phase"), str):
            keys.append(f"event/{a['id']}/{a['phase']}")
        elif leaf == "snapshot":
            keys.append(f"snapshot/{a['id']}")
    return keys


def all_nodes(prefix: str, leaf: str) -> str:
    """Subscription for one leaf topic of every node (station side)."""
    return f"{prefix}/+/{leaf}"


def split_topic(topic: str) -> tuple[str, str, str]:
    """``<p>/<id>/<leaf...>`` → (prefix, node id, leaf)."""
    parts = topic.split("/", 2)
    if len(parts) < 3:
        raise ValueError(f"not a camnode topic: {topic!r}")
    return parts[0], parts[1], parts[2]


def iso(ts: datetime) -> str:
    """UTC ISO 8601 with millisecond precision and a Z."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


#: The one rule for times people type (commands, CLI): ISO 8601 with a zone, never guessed.
TIME_HELP = ("ISO 8601 with a zone: Z for UTC or an offset, e.g. 2026-11-22T18:00:00Z or "
             "2026-11-23T01:00:00+07:00")


def parse_time(text: str) -> datetime:
    """A time a person gave (command argument, CLI option) as aware UTC. A time without a zone
    is refused, never guessed (UTC and the node's zone are 7 hours apart in Vietnam)."""
    shown = text[:40] + ("..." if len(text) > 40 else "")
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{shown!r} is not an ISO 8601 time ({TIME_HELP})") from None
    if ts.tzinfo is None:
        raise ValueError(f"{shown!r} has no time zone: add Z for UTC or an offset such as +07:00")
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # year 1 at +23:59, year 9999 at -23:59
        raise ValueError(f"{shown!r} is out of range in UTC") from None


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def status_payload(state: str, utc: datetime, version: str, reason: str = "") -> bytes:
    return encode({"state": state, "utc": iso(utc), "version": version, "reason": reason,
                   "schema": SCHEMA_VERSION})


def decode(data: bytes, limit: int = MAX_COMMAND_BYTES, max_depth: int = 0) -> dict[str, Any]:
    """Parse a JSON object payload; raises ValueError with a message fit for a reply."""
    if len(data) > limit:
        raise ValueError(f"payload of {len(data)} bytes exceeds the {limit}-byte limit")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_not_json, parse_float=_finite) if data else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"payload is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"payload nests deeper than {max_depth or MAX_DEPTH} levels") from None
    if not isinstance(obj, dict):
        raise ValueError("payload must be a JSON object")
    if _depth(obj, max_depth or MAX_DEPTH) > (max_depth or MAX_DEPTH):
        raise ValueError(f"payload nests deeper than {max_depth or MAX_DEPTH} levels")
    return obj


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a float (1e999) is refused, not infinity."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"payload is not JSON a reader can use: {text[:20]} overflows a number")
    return value


def _not_json(name: str) -> Any:
    """Python's json reads NaN and Infinity; JSON has no such numbers (nor do the databases)."""
    raise ValueError(f"payload is not JSON: {name} is not a JSON number")


#: Deepest nesting a command may have (commands need 2); others pass their own ``max_depth``.
MAX_DEPTH = 8


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth, without recursion (a hostile payload cannot exhaust the stack)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack.extend((v, d + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest
