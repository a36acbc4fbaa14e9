"""What the console knows live, from MQTT: the fleet, recent alerts with their snapshots, and
each node's heartbeat history — and the broadcaster that pushes alerts to open browsers.

Threads: paho's network thread calls :meth:`LiveState.on_message`; web requests read under
the lock; :class:`Broadcaster` hands each alert to every browser's asyncio queue with
``call_soon_threadsafe`` (a slow browser loses its oldest items, never blocks the link).
The console's MQTT session is not persistent and only reads: archiving and acknowledging
events to the nodes is the station service's job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.link import topics as t
from station.connect import Connection
from station.fleet import Fleet
from station.mqtt_session import Session

log = logging.getLogger(__name__)

MAX_ALERTS = 300
MAX_SNAPSHOTS = 300
MAX_SNAPSHOT_BYTES = 4 << 20
#: Heartbeat history kept per node (one point per heartbeat; 2 h at the 10 s default).
HISTORY_POINTS = 720


@dataclass
class Alert:
    id: str
    node: str
    label: str
    phase: str
    score: float | None
    start: str
    end: str | None
    snapshot: bool
    box: list[float] | None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Broadcaster:
    """Fan-out to server-sent-event listeners (each an asyncio queue on the web loop)."""

    def __init__(self, queue_size: int = 100) -> None:
        self._lock = threading.Lock()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._size = queue_size

    def listen(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self._size)
        with self._lock:
            self._listeners.add((asyncio.get_running_loop(), q))
        return q

    def forget(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._listeners = {(lp, x) for lp, x in self._listeners if x is not q}

    def publish(self, item: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for loop, q in listeners:
            try:
                loop.call_soon_threadsafe(_put_dropping_oldest, q, item)
            except RuntimeError:  # that browser's loop is closed
                self.forget(q)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._listeners)


def _put_dropping_oldest(q: asyncio.Queue, item: dict[str, Any]) -> None:
    if q.full():
        q.get_nowait()
    q.put_nowait(item)


class LiveState:
    def __init__(self, clock: Any, broadcaster: Broadcaster | None = None) -> None:
        self.clock = clock
        self.fleet = Fleet(clock)
        self.broadcaster = broadcaster or Broadcaster()
        self._lock = threading.Lock()
        self._alerts: OrderedDict[str, Alert] = OrderedDict()
        self._snaps: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self.bad_messages = 0

    # ---- input (MQTT thread)
    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            _, node_id, leaf = t.split_topic(topic)
            if leaf.startswith("snapshot/"):
                self._snapshot(node_id, leaf[len("snapshot/"):], payload)
                return
            msg = t.decode(payload, limit=1 << 20)
        except Exception as exc:  # one odd message never silences the console
            self.bad_messages += 1
            if self.bad_messages <= 10:
                log.warning("unreadable message on %s: %s", topic, exc)
            return
        self.fleet.feed(node_id, leaf, msg)
        if leaf == "heartbeat":
            self._beat(node_id, msg)
        elif leaf == "event":
            self._event(node_id, msg)

    def _beat(self, node_id: str, msg: dict[str, Any]) -> None:
        point = {"utc": self.clock.utc(), "hb": msg}
        with self._lock:
            self._history.setdefault(node_id, deque(maxlen=HISTORY_POINTS)).append(point)

    def _event(self, node_id: str, msg: dict[str, Any]) -> None:
        if msg.get("kind") != "object" or not isinstance(msg.get("id"), str):
            return
        score = msg.get("score")
        a = Alert(id=msg["id"], node=node_id, label=str(msg.get("label") or "?"),
                  phase=str(msg.get("phase", "?")),
                  score=float(score) if isinstance(score, int | float) else None,
                  start=str(msg.get("start") or ""), end=msg.get("end"),
                  snapshot=bool(msg.get("snapshot")),
                  box=msg.get("box") if isinstance(msg.get("box"), list) else None)
        with self._lock:
            old = self._alerts.pop(a.id, None)
            if old is not None and a.phase != "end":  # keep the start's score if the update lacks it
                a.score = a.score if a.score is not None else old.score
            self._alerts[a.id] = a
            while len(self._alerts) > MAX_ALERTS:
                self._alerts.popitem(last=False)
            have_snap = a.id in self._snaps
        self.broadcaster.publish({"type": "alert", **a.as_json(), "has_snapshot": have_snap})

    def _snapshot(self, node_id: str, event_id: str, jpeg: bytes) -> None:
        if len(jpeg) > MAX_SNAPSHOT_BYTES or jpeg[:2] != b"\xff\xd8":
            self.bad_messages += 1
            return
        with self._lock:
            self._snaps[event_id] = (node_id, bytes(jpeg))
            while len(self._snaps) > MAX_SNAPSHOTS:
                self._snaps.popitem(last=False)
        self.broadcaster.publish({"type": "snapshot", "id": event_id, "node": node_id})

    # ---- reads (web threads)
    def alerts(self, label: str = "", node: str = "", limit: int = 100) -> list[Alert]:
        with self._lock:
            items = list(reversed(self._alerts.values()))
        return [a for a in items if (not label or a.label == label) and (not node or a.node == node)][:limit]

    def snapshot(self, event_id: str) -> tuple[str, bytes] | None:
        with self._lock:
            return self._snaps.get(event_id)

    def has_snapshot(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._snaps

    def history(self, node_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._history.get(node_id, ()))

    def node_ids(self) -> list[str]:
        return [r["node"] for r in self.fleet.rows()]


class MqttBridge:
    """The console's one broker session: subscribed to every node's status, heartbeat, event and
    snapshot topics for :class:`LiveState`, and shared (:attr:`session`) with the console's
    commands and evidence cases, which add their own subscriptions while they wait for a reply
    or a clip (the ward's broker allows one connection per user: a second connection of the
    console's user would end this one). Connects in the background and reconnects by itself."""

    def __init__(self, conn: Connection, sink: Callable[[str, bytes], None]) -> None:
        self.connected = threading.Event()
        self.error: str | None = None
        #: connections lost since start (a healthy console on a healthy broker: 0)
        self.drops = 0
        self._sink = sink
        leaves = ("status", "heartbeat", "event", "snapshot/+")
        subs = [(t.all_nodes(conn.prefix, leaf), 1) for leaf in leaves]
        self.session = Session(conn, subs, on_message=lambda msg: self._sink(msg.topic, bytes(msg.payload)),
                               on_state=self._on_state, thread_name="console-mqtt",
                               partial_ok=True)  # a filter the ACL refuses: the rest still works

    def start(self) -> MqttBridge:
        self.session.start()
        return self

    def stop(self) -> None:
        self.session.close()

    def _on_state(self, reason: str | None) -> None:
        if reason is None:
            self.error = None
            self.connected.set()
            return
        if self.connected.is_set():
            self.drops += 1
        self.connected.clear()
        self.error = reason
        log.warning("console: %s", reason)


def sse(item: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {item.get('type', 'message')}\ndata: {json.dumps(item)}\n\n"
