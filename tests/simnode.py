"""Simulated nodes for the station's load tests and bench: the node's real link (``MqttLink`` +
durable ``Outbox``, archive acknowledgements) sending generated events — the real contract
without cameras. ``SimNode.event()`` queues one object event's start and end."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from node.clock import SystemClock
from node.link.mqtt import MqttLink
from node.link.outbox import Outbox
from node.link.topics import iso

LABELS = ("person", "person", "person", "car", "motorcycle")
COLOURS = ("black", "white", "grey", "red", "blue", "green", "yellow")


class SimNode:
    def __init__(self, node_id: str, port: int, workdir: Path, *, ack_resend_s: float = 5.0,
                 seed: int = 0, heartbeat: bool = False) -> None:
        self.node_id = node_id
        self.rnd = random.Random(seed)
        self.sent: list[str] = []  # event ids, in order
        self.sent_at: dict[str, float] = {}  # event id → monotonic time its start was queued
        self._n = 0
        self._lock = threading.Lock()
        outbox = Outbox(workdir / f"{node_id}.sqlite", max_rows=100_000)
        self.link = MqttLink(host="127.0.0.1", port=port, node_id=node_id, prefix="camnode",
                             clock=SystemClock(), outbox=outbox, ack_resend_s=ack_resend_s,
                             reconnect_max_s=1.0)
        self.heartbeat = heartbeat

    def start(self) -> SimNode:
        self.link.start()
        return self

    def event(self, now: float) -> str:
        with self._lock:
            self._n += 1
            n = self._n
        t0 = datetime.now(UTC)
        eid = f"{t0:%Y%m%dT%H%M%S}{t0.microsecond // 1000:03d}Z-{self.node_id}-o{n}"
        label = self.rnd.choice(LABELS)
        colours = {"upper": self.rnd.choice(COLOURS), "lower": self.rnd.choice(COLOURS)} \
            if label == "person" else {"body": self.rnd.choice(COLOURS)}
        base = {"id": eid, "kind": "object", "label": label, "classes": [label], "score": 0.8,
                "box": [0.1, 0.2, 0.3, 0.9], "start": iso(t0), "snapshot": False,
                "appearance": {"colours": colours, "entry": "left"}}
        self.sent.append(eid)
        self.sent_at[eid] = now
        self.link.send_durable(self.link.topics.event, {**base, "phase": "start", "end": None,
                                                        "duration_s": 0.0})
        end = t0 + timedelta(seconds=4)
        self.link.send_durable(self.link.topics.event, {
            **base, "phase": "end", "end": iso(end), "duration_s": 4.0,
            "appearance": {**base["appearance"], "exit": "right"}})
        return eid

    def beat(self) -> None:
        self.link.publish(self.link.topics.heartbeat, {"node_id": self.node_id, "utc": iso(datetime.now(UTC)),
                                                        "faults": {}}, qos=0)

    def outbox(self) -> int:
        return len(self.link.outbox)

    def close(self) -> None:
        self.link.close()
        self.link.outbox.close()
