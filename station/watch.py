"""The station's live view: one line per status, heartbeat and event from every node.

Subscribes to ``<prefix>/+/status``, ``/heartbeat`` and ``/event``. Lines are meant for a
terminal in the police post; ``--json`` prints the raw payloads instead (for piping).
Thread: paho's network thread prints; ``start``/``stop`` from the caller.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from node.link import topics as t
from station.connect import Connection
from station.mqtt_session import Session

#: What a heartbeat line says, for a newcomer (printed by the demo).
HEARTBEAT_LEGEND = (
    "HEARTBEAT fps <captured>/<encoded> frames per second · dropped <frames the encoder could not "
    "take> · enc <H.264 encoder> · day|night <IR mode> · detect on|off <person model loaded> · "
    "disk <free MB> · up <seconds since start> · faults: <what is wrong now, or none>\n"
    "EVENT lines start with the time they arrived here (so they read in arrival order); the "
    "event's own start (and end) follow. SNAPSHOT: the best picture of a person event.")


def format_line(node_id: str, leaf: str, msg: dict[str, Any], received: str | None = None) -> str:
    """One line of the view. ``received``: when the message arrived (event lines lead with it,
    so that a list of events reads in arrival order; their own times follow)."""
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
        if received is None:
            return (f"{when or '?'} {node_id:<16} EVENT     {msg.get('phase', '?'):<6} {what}{score}"
                    f"{dur} id {msg.get('id', '?')}")
        span = f"start {msg.get('start', '?')}" + (f" end {msg['end']}" if msg.get("end") else "")
        return (f"{received} {node_id:<16} EVENT     {msg.get('phase', '?'):<6} {what}{score}{dur} "
                f"({span}) id {msg.get('id', '?')}")
    return f"{node_id:<16} {leaf} {json.dumps(msg)}"


_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

#: What the view subscribes to, for every node.
LEAVES = ("status", "heartbeat", "event", "snapshot/+")


class Watcher:
    def __init__(self, conn: Connection | str, port: int = 0, prefix: str = "camnode", *,
                 out: IO[str] | None = None, raw_json: bool = False,
                 sink: Callable[[str, str, dict[str, Any]], None] | None = None,
                 quiet: bool = False, tls_ca: str = "", snapshot_dir: str | Path | None = None,
                 clock: Any = None) -> None:
        """``conn``: where and as whom (a bare host name: anonymous, ``port`` and ``prefix``).
        ``sink(node_id, leaf, payload)`` also receives every JSON message (the fleet view);
        ``quiet`` prints nothing. ``snapshot_dir``: event snapshots are saved there as
        ``<node>/<event id>.jpg`` (a better one replaces the first). ``clock``: ``utc()`` for
        arrival times (injected in tests). :meth:`start` raises :class:`station.connect.StationError`
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
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self._clock = clock
        self._lock = threading.Lock()
        subs = [(t.all_nodes(conn.prefix, leaf), 1) for leaf in LEAVES]
        # a technician may read status and heartbeats but not events: show what is allowed
        self._session = Session(conn, subs, on_message=self._on_message, on_state=self._on_state,
                                partial_ok=True, yield_to_same_user=True)
        self._client = self._session.client

    def start(self) -> None:
        self._session.open()
        if self._session.denied and not self.quiet:
            print(f"note: not authorised to read {', '.join(self._session.denied)}; showing the rest",
                  file=self.out, flush=True)

    def stop(self) -> None:
        self._session.close()

    @property
    def ended(self) -> threading.Event:
        """Set when the view cannot go on (another program took over its user)."""
        return self._session.ended

    @property
    def end_reason(self) -> str | None:
        return self._session.end_reason

    def _on_state(self, reason: str | None) -> None:
        self.connect_error = reason
        if not self.quiet:
            with self._lock:
                print(reason or "connected again", file=self.out, flush=True)

    def _save_snapshot(self, node_id: str, event_id: str, jpeg: bytes) -> Path:
        """Write atomically (a viewer never sees half a picture); ids are checked topic levels."""
        if not _SAFE.match(node_id) or not _SAFE.match(event_id):
            raise ValueError(f"odd snapshot name {node_id}/{event_id}")
        assert self.snapshot_dir is not None
        path = self.snapshot_dir / node_id / f"{event_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".jpg.part")
        tmp.write_bytes(jpeg)
        tmp.replace(path)
        return path

    def _on_message(self, msg) -> None:
        try:
            _, node_id, leaf = t.split_topic(msg.topic)
            received = t.iso(self._clock.utc() if self._clock is not None else datetime.now(UTC))
            if leaf.startswith("snapshot/"):
                line = f"{received} {node_id:<16} SNAPSHOT  {leaf[9:]} ({len(msg.payload)} bytes JPEG)"
                if self.snapshot_dir is not None:
                    line += f" saved {self._save_snapshot(node_id, leaf[9:], bytes(msg.payload))}"
            else:
                payload = t.decode(bytes(msg.payload), limit=1 << 20, max_depth=64)
                if self.sink is not None:
                    self.sink(node_id, leaf, payload)
                line = json.dumps({"topic": msg.topic, **payload}) if self.raw_json else \
                    format_line(node_id, leaf, payload, received)
        except Exception as exc:  # one odd message must never silence the station's view
            line = f"unreadable message on {msg.topic}: {type(exc).__name__}: {exc}"
        if self.quiet:
            return
        with self._lock:
            print(line, file=self.out, flush=True)
            self.lines += 1
