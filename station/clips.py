"""Pull footage of an incident from a node over MQTT: ``camnode-station clip``.

One client subscribes to the node's ``reply/clip`` and ``clip/#`` *before* asking, so no chunk
can be missed; it asks for the range, learns the request id from the reply, gathers the
chunks of that request, and on ``done`` checks count, size and SHA-256 before writing the MP4
and its manifest (``<clip>.json``). The manifest is then verified like any export
(``camnode verify clip.mp4 --manifest clip.json --pubkey <node key>``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from node.link import topics as t


class ClipError(RuntimeError):
    """The node refused or failed the export, or the transfer was incomplete."""


def fetch_clip(host: str, port: int, prefix: str, node_id: str, start: str, end: str, out_dir: Path,
               *, timeout_s: float = 300.0, username: str = "", password: str = "") -> tuple[Path, Path]:
    topics = t.Topics(prefix, node_id)
    ask_id = secrets.token_hex(6)
    state: dict[str, Any] = {"request": None, "chunks": {}, "dones": {}, "done": None, "error": None}
    finished = threading.Event()
    lock = threading.Lock()
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if username:
        c.username_pw_set(username, password or None)

    def on_connect(cl, ud, flags, rc, props):
        if rc.is_failure:
            state["error"] = f"broker refused the console: {rc}"
            finished.set()
            return
        cl.subscribe([(topics.reply("clip"), 1), (f"{topics.base}/clip/#", 1)])

    def on_subscribe(cl, ud, mid, rcs, props):
        cl.publish(topics.cmd("clip"), json.dumps({"start": start, "end": end, "id": ask_id}), qos=1)

    def check_complete() -> None:
        req = state["request"]
        done = state["dones"].get(req) if req else None
        if done is None:
            return
        if not done.get("ok") or len(state["chunks"].get(req, {})) >= done["chunks"]:
            state["done"] = done
            finished.set()

    def on_message(cl, ud, msg):
        with lock:
            if msg.topic == topics.reply("clip"):
                reply = json.loads(msg.payload)
                if reply.get("id") != ask_id:
                    return
                if not reply.get("ok"):
                    state["error"] = reply.get("error", "refused")
                    finished.set()
                    return
                # the export may have started streaming before this reply arrived
                state["request"] = reply["result"]["request"]
            else:
                parts = msg.topic.split("/")
                request, part = parts[-2], parts[-1]
                if part == "done":
                    state["dones"][request] = json.loads(msg.payload)
                else:
                    state["chunks"].setdefault(request, {})[int(part)] = bytes(msg.payload)
            check_complete()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        if not finished.wait(timeout_s):
            raise ClipError(f"no complete clip from {node_id} within {timeout_s:.0f} s")
    finally:
        c.disconnect()
        c.loop_stop()
    if state["error"]:
        raise ClipError(state["error"])
    done = state["done"]
    if not done.get("ok"):
        raise ClipError(f"{node_id} could not export the clip: {done.get('error')}")
    chunks = state["chunks"][state["request"]]
    data = b"".join(chunks[i] for i in range(done["chunks"]))
    if len(data) != done["bytes"] or hashlib.sha256(data).hexdigest() != done["sha256"]:
        raise ClipError("the clip arrived damaged (size or SHA-256 differs); ask again")
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = out_dir / done["name"]
    clip.write_bytes(data)
    manifest = clip.with_suffix(".json")
    manifest.write_text(json.dumps(done["manifest"], indent=2, sort_keys=True))
    return clip, manifest
