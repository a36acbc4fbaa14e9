"""One command to one node and its reply (the technician's console over MQTT, used by the CLI
and the web console).

Subscribes to the node's ``reply/<name>`` before publishing ``cmd/<name>`` with a fresh
``id``, so the answer cannot be missed or confused with another console's.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

from node.link import topics as t
from station.connect import make_client


class NoReply(TimeoutError):
    """The node did not answer in time (offline, or the broker denied the command)."""


def request(host: str, port: int, prefix: str, node_id: str, name: str, args: dict[str, Any] | None = None,
            *, timeout_s: float = 10.0, username: str = "", password: str = "",
            tls_ca: str = "") -> dict[str, Any]:
    topics = t.Topics(prefix, node_id)
    req_id = secrets.token_hex(6)
    payload = {**(args or {}), "id": req_id}
    got: dict[str, Any] = {}
    done = threading.Event()
    subscribed = threading.Event()

    c = make_client(username, password, tls_ca)

    def on_connect(cl, ud, flags, rc, props):
        if rc.is_failure:
            got["error"] = f"broker refused the console: {rc}"
            done.set()
            return
        cl.subscribe(topics.reply(name), qos=1)

    def on_subscribe(cl, ud, mid, rcs, props):
        subscribed.set()
        cl.publish(topics.cmd(name), json.dumps(payload), qos=1)

    def on_message(cl, ud, msg):
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        if reply.get("id") == req_id:
            got.update(reply)
            done.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        if not done.wait(timeout_s):
            raise NoReply(f"no reply from {node_id} to {name!r} within {timeout_s:.0f} s")
    finally:
        c.disconnect()
        c.loop_stop()
    if "error" in got and "command" not in got:
        raise ConnectionError(got["error"])
    return got
