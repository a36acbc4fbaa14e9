"""Pull footage of an incident from a node over MQTT: ``camnode-station clip``.

One session subscribes to the node's ``reply/clip`` and ``clip/#`` *before* asking (once: a
reconnect never asks again, it ends the transfer), so no chunk can be missed; then to its
``status``, so a node that is (or goes) offline ends the wait at once. Chunks are written
straight to a temporary file at their offsets (memory stays one chunk, whatever the clip's
length); on ``done`` the count, size and SHA-256 are checked before the file is renamed into
place beside its manifest (``<clip>.mp4.json``: the one naming rule,
node.record.export.manifest_path). Waiting ends with a reason: the node refused, went
offline, stopped sending for ``idle_s``, or a chunk is missing. The manifest verifies like
any export (``camnode verify clip.mp4 --inventory inventory.csv`` or ``--pubkey signing.pub``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from node.link import topics as t
from node.record.export import manifest_path
from station.connect import StationError
from station.mqtt_session import Via, connection_of, listening

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.mp4$")


class ClipError(StationError):
    """The node refused or failed the export, or the transfer was incomplete."""


class _Transfer:
    """State of one request; every method runs under ``lock`` on paho's thread."""

    def __init__(self, work: Path) -> None:
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.request: str | None = None
        self.error: str | None = None
        self.done: dict[str, Any] | None = None
        self.early: dict[str, dict[int, bytes]] = {}  # chunks that beat the reply
        self.received: set[int] = set()
        self.chunk_bytes = 256 * 1024
        self.last_activity = time.monotonic()
        self.fh = open(work / "clip.part", "w+b")  # noqa: SIM115 - closed by fetch_clip

    def chunk(self, request: str, n: int, data: bytes) -> None:
        if self.request is None:
            self.early.setdefault(request, {})[n] = data
        elif request == self.request:
            self.fh.seek(n * self.chunk_bytes)
            self.fh.write(data)
            self.received.add(n)

    def accept(self, request: str, chunk_bytes: int) -> None:
        self.request, self.chunk_bytes = request, chunk_bytes
        for n, data in self.early.pop(request, {}).items():
            self.chunk(request, n, data)
        self.early.clear()

    def check(self) -> None:
        d = self.done
        if d is not None and (not d.get("ok") or len(self.received) >= d.get("chunks", 0)):
            self.finished.set()

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self.finished.set()


def fetch_clip(via: Via, node_id: str, start: str, end: str, out_dir: Path,
               *, idle_s: float = 60.0, reply_s: float = 15.0) -> tuple[Path, Path]:
    """``via``: a :class:`~station.connect.Connection` (a session of its own for this pull) or a
    program's running session (the console's: its other parts stay connected)."""
    topics = t.Topics(connection_of(via).prefix, node_id)
    ask_id = secrets.token_hex(6)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".clip-", dir=out_dir))
    tr = _Transfer(work)
    pending_dones: dict[str, dict[str, Any]] = {}

    def on_state(reason: str | None) -> None:
        if reason is not None:  # chunks sent while the link was down are lost: never ask twice
            tr.fail(f"the connection to the broker dropped during the transfer ({reason}); ask again")

    def on_message(msg: Any) -> None:
        try:
            with tr.lock:
                tr.last_activity = time.monotonic()
                _handle(msg)
                tr.check()
        except Exception as exc:  # a malformed message ends this transfer with a reason
            tr.fail(f"unreadable message on {msg.topic}: {type(exc).__name__}: {exc}")

    def _handle(msg: Any) -> None:
        if msg.topic == topics.status:
            state = json.loads(msg.payload).get("state")
            if state == "offline":
                tr.fail(f"{node_id} went offline during the transfer")
            return
        if msg.topic == topics.reply("clip"):
            reply = json.loads(msg.payload)
            if reply.get("id") != ask_id:
                return
            if not reply.get("ok"):
                tr.fail(f"{node_id} refused: {reply.get('error', '?')}")
                return
            res = reply["result"]
            tr.accept(str(res["request"]), int(res.get("chunk_bytes", tr.chunk_bytes)))
            if tr.request in pending_dones:
                tr.done = pending_dones.pop(tr.request)
            return
        request, part = msg.topic.split("/")[-2:]
        if part == "done":
            done = json.loads(msg.payload)
            if tr.request is None:
                pending_dones[request] = done
            elif request == tr.request:
                tr.done = done
        else:
            tr.chunk(request, int(part), bytes(msg.payload))

    subs = [(topics.reply("clip"), 1), (f"{topics.base}/clip/#", 1)]
    try:
        with listening(via, subs, on_message, on_state) as session:
            with tr.lock:
                tr.last_activity = time.monotonic()
            session.publish(topics.cmd("clip"), json.dumps({"start": start, "end": end, "id": ask_id}))
            # the retained status only after the ask: an "offline" now means offline
            with session.listen([(topics.status, 1)], on_message):
                started = time.monotonic()
                while not tr.finished.wait(0.5):
                    now = time.monotonic()
                    if tr.request is None and now - started > reply_s:
                        tr.fail(f"no answer from {node_id} within {reply_s:.0f} s (offline?)")
                    elif now - tr.last_activity > idle_s:
                        tr.fail(f"{node_id} stopped sending for {idle_s:.0f} s "
                                f"({len(tr.received)} chunks received)")
        with tr.lock:
            return _finish(tr, node_id, out_dir)
    finally:
        tr.fh.close()
        for p in work.iterdir():
            p.unlink()
        work.rmdir()


def _finish(tr: _Transfer, node_id: str, out_dir: Path) -> tuple[Path, Path]:
    if tr.error:
        raise ClipError(tr.error)
    done = tr.done or {}
    if not done.get("ok"):
        raise ClipError(f"{node_id} could not export the clip: {done.get('error')}")
    missing = sorted(set(range(done["chunks"])) - tr.received)
    if missing:
        raise ClipError(f"chunks {missing[:10]} never arrived; ask again")
    tr.fh.flush()
    tr.fh.truncate(done["bytes"])
    tr.fh.seek(0)
    sha = hashlib.sha256()
    while block := tr.fh.read(1 << 20):
        sha.update(block)
    if sha.hexdigest() != done["sha256"]:
        raise ClipError("the clip arrived damaged (SHA-256 differs); ask again")
    name = str(done.get("name", ""))
    if not _SAFE_NAME.match(name):
        name = f"{node_id}-clip.mp4"
    clip = out_dir / name
    n = 1
    while clip.exists() or manifest_path(clip).exists():  # never overwrite evidence
        clip = out_dir / f"{Path(name).stem}-{n}.mp4"
        n += 1
    manifest = manifest_path(clip)
    manifest.write_text(json.dumps(done["manifest"], indent=2, sort_keys=True))
    tr.fh.close()
    os.replace(tr.fh.name, clip)
    return clip, manifest


__all__ = ["ClipError", "fetch_clip"]
