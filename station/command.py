"""One command to one node and its reply (the technician's console over MQTT, used by the CLI
and the web console).

Subscribes to the node's ``reply/<name>`` (granted, or a :class:`StationError` says the ACL
refused it) before publishing ``cmd/<name>`` with a fresh ``id`` and waiting for the broker's
PUBACK (a refusal says so), so the answer cannot be missed or confused with another
console's, and "no reply" really means the node did not answer.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

from node.link import topics as t
from station.connect import StationError
from station.mqtt_session import Via, connection_of, listening


class NoReply(StationError, TimeoutError):
    """The node did not answer in time (offline, or busy)."""


def request(via: Via, node_id: str, name: str, args: dict[str, Any] | None = None,
            *, timeout_s: float = 10.0) -> dict[str, Any]:
    """``via``: a :class:`~station.connect.Connection` (a session of its own for this command)
    or a program's running session (the console's: its other parts stay connected)."""
    topics = t.Topics(connection_of(via).prefix, node_id)
    req_id = secrets.token_hex(6)
    payload = {**(args or {}), "id": req_id}
    got: dict[str, Any] = {}
    done = threading.Event()

    def on_message(msg: Any) -> None:
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(reply, dict) and reply.get("id") == req_id:
            got.update(reply)
            done.set()

    with listening(via, [(topics.reply(name), 1)], on_message) as session:
        session.publish(topics.cmd(name), json.dumps(payload), qos=1)
        deadline = time.monotonic() + timeout_s
        while not done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if session.ended.is_set():
                raise StationError(session.end_reason or "the connection ended")
            if time.monotonic() >= deadline:
                break
        if not done.is_set():
            raise NoReply(f"no reply from {node_id} to {name!r} within {timeout_s:g} s (offline?)")
    return got
