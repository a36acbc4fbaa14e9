"""The station's live view: one line per status, heartbeat and event from every node.

Subscribes to ``<prefix>/+/status``, ``/heartbeat`` and ``/event``. Lines are meant for a
terminal in the police post; ``--json`` prints the raw payloads instead (for piping).
Thread: paho's network thread prints; ``start``/``stop`` from the caller.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from node.link import topics as t
from station.connect import Connection, Session


def format_line(node_id: str, leaf: str, msg: dict[str, Any]) -> str:
    if leaf == "status":
        reason = f" ({msg['reason']})" if msg.get("reason") else ""
        return f"{msg.get('utc', '?')} {node_id:<16} STATUS    {msg.get('state', '?')}{reason}"
    if leaf == "heartbeat":
        faults = ", ".join(f"{k}: {v}" for k, v in (msg.get("faults") or {}).items()) or "none"
        temps = msg.get("temperatures_c") or {}
        temp = f" {max(temps.values()):.0f}°C" if temps else ""
        mode = (msg.get("daynight") or {}).get("mode", "?")
        det = ((msg.get("vision") or {}).get("detect") or {})
        detect = "on" if det.get("enabled") else "off"
        return (f"{msg.get('utc', '?')} {node_id:<16} HEARTBEAT fps {msg.get('fps_in', 0):.1f}/"
                f"{msg.get('fps_out', 0):.1f} dropped {msg.get('frames_dropped', 0)} "
                f"enc {msg.get('encoder')} {mode} detect {detect} disk {msg.get('disk_free_mb', 0):.0f}MB"
                f"{temp} up {msg.get('uptime_s', 0):.0f}s faults: {faults}")
    if leaf == "event":
        what = msg.get("label") or msg.get("kind", "?")
        when = msg.get("end") if msg.get("phase") == "end" else msg.get("start")
        score = f" score {msg['score']:.2f}" if isinstance(msg.get("score"), int | float) else ""
        dur = f" {msg['duration_s']:.1f}s" if msg.get("phase") == "end" and "duration_s" in msg else ""
        return (f"{when or '?'} {node_id:<16} EVENT     {msg.get('phase', '?'):<6} {what}{score}{dur} "
                f"id {msg.get('id', '?')}")
    return f"{node_id:<16} {leaf} {json.dumps(msg)}"


#: What the view subscribes to, for every node.
LEAVES = ("status", "heartbeat", "event", "snapshot/+")


class Watcher:
    def __init__(self, conn: Connection | str, port: int = 0, prefix: str = "camnode", *,
                 out: IO[str] | None = None, raw_json: bool = False,
                 sink: Callable[[str, str, dict[str, Any]], None] | None = None,
                 quiet: bool = False, tls_ca: str = "") -> None:
        """``conn``: where and as whom (a bare host name: anonymous, ``port`` and ``prefix``).
        ``sink(node_id, leaf, payload)`` also receives every JSON message (the fleet view);
        ``quiet`` prints nothing. :meth:`start` raises :class:`station.connect.StationError`
        when the broker cannot be reached or refuses the login or the subscriptions."""
        if isinstance(conn, str):
            conn = Connection(host=conn, port=port, prefix=prefix, tls_ca=tls_ca)
        self.prefix = conn.prefix
        self.sink = sink
        self.quiet = quiet
        self.connect_error: str | None = None
        self.out = out or sys.stdout
        self.raw_json = raw_json
        self.lines = 0
        self._lock = threading.Lock()
        subs = [(t.all_nodes(conn.prefix, leaf), 1) for leaf in LEAVES]
        # a technician may read status and heartbeats but not events: show what is allowed
        self._session = Session(conn, subs, on_message=self._on_message, on_state=self._on_state,
                                partial_ok=True)
        self._client = self._session.client

    def start(self) -> None:
        self._session.open()
        if self._session.denied and not self.quiet:
            print(f"note: not authorised to read {', '.join(self._session.denied)}; showing the rest",
                  file=self.out, flush=True)

    def stop(self) -> None:
        self._session.close()

    def _on_state(self, reason: str | None) -> None:
        self.connect_error = reason
        if not self.quiet:
            with self._lock:
                print(reason or "connected again", file=self.out, flush=True)

    def _on_message(self, msg) -> None:
        try:
            _, node_id, leaf = t.split_topic(msg.topic)
            if leaf.startswith("snapshot/"):
                line = f"{node_id:<16} SNAPSHOT  {leaf[9:]} ({len(msg.payload)} bytes JPEG)"
            else:
                payload = t.decode(bytes(msg.payload), limit=1 << 20)
                if self.sink is not None:
                    self.sink(node_id, leaf, payload)
                line = json.dumps({"topic": msg.topic, **payload}) if self.raw_json else \
                    format_line(node_id, leaf, payload)
        except Exception as exc:  # one odd message must never silence the station's view
            line = f"unreadable message on {msg.topic}: {type(exc).__name__}: {exc}"
        if self.quiet:
            return
        with self._lock:
            print(line, file=self.out, flush=True)
            self.lines += 1
