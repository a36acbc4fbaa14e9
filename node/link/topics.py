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
    <p>/<id>/clip/<request>/<n>, .../done   an exported clip in chunks, then its manifest

Payloads are UTF-8 JSON objects; times are ISO 8601 UTC with a ``Z``. ``docs/mqtt.md`` is the
human version of this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SCHEMA_VERSION = 1

#: Fields every heartbeat carries (more may follow; consumers ignore unknown fields).
HEARTBEAT_FIELDS = (
    "node_id", "version", "uptime_s", "utc", "fps_in", "fps_out", "frames_dropped",
    "encoder", "disk_free_mb", "cpu_load", "temperatures_c", "memory",
)

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


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def status_payload(state: str, utc: datetime, version: str, reason: str = "") -> bytes:
    return encode({"state": state, "utc": iso(utc), "version": version, "reason": reason,
                   "schema": SCHEMA_VERSION})


def decode(data: bytes, limit: int = MAX_COMMAND_BYTES) -> dict[str, Any]:
    """Parse a JSON object payload; raises ValueError with a message fit for a reply."""
    if len(data) > limit:
        raise ValueError(f"payload of {len(data)} bytes exceeds the {limit}-byte limit")
    try:
        obj = json.loads(data.decode("utf-8")) if data else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("payload must be a JSON object")
    return obj
