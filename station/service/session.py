"""The archive service: a persistent MQTT 5 session in, database rows and acknowledgements out.

* **Session.** A fixed client id, clean start off and a session expiry of days: while the
  service is down the broker keeps its subscriptions and queues every QoS 1 message for it.
  Messages are acknowledged to the broker (PUBACK, paho's manual ack) only *after* the
  database commit, so a service killed mid-batch gets them again from the broker.
* **Subscriptions** (QoS 1): ``<p>/+/status``, ``heartbeat``, ``event``, ``snapshot/+``,
  ``lost``, ``cmd/+`` (the audit of every command sent), ``reply/+`` and ``clip/+/done`` —
  with ``share_group`` as ``$share/<group>/...`` so several instances split the load (each
  message to one of them).
* **Writer thread** (``archive-writer``): takes what paho's thread queued, writes up to
  ``batch_max`` messages per transaction through :class:`~station.archive.ingest.Ingestor`,
  then PUBACKs them and publishes the archive acknowledgements to ``<p>/<node>/ack/event`` and
  ``ack/snapshot`` (QoS 1, one message per node per batch). When the database is unreachable
  the batch is retried (nothing acknowledged, nothing lost) until it is back.

Threads: paho's network thread (callbacks only enqueue), ``archive-writer``.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from station.archive.ingest import Ack, Ingestor
from station.rules import Forwarder
from station.service.config import ServeConfig

log = logging.getLogger(__name__)

LEAVES = ("status", "heartbeat", "event", "snapshot/+", "lost", "cmd/+", "reply/+", "clip/+/done")


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: float  # monotonic


def subscriptions(prefix: str, share_group: str = "") -> list[str]:
    share = f"$share/{share_group}/" if share_group else ""
    return [f"{share}{prefix}/+/{leaf}" for leaf in LEAVES]


def ack_messages(prefix: str, acks: list[Ack]) -> list[tuple[str, bytes]]:
    """One message per node and kind: a single ``{"id", "phase"}`` or ``{"acks": [...]}``."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for a in acks:
        grouped[(a.node, a.leaf)].append(a.body)
    out = []
    for (node, leaf), bodies in grouped.items():
        body = bodies[0] if len(bodies) == 1 else {"acks": bodies}
        out.append((f"{prefix}/{node}/ack/{leaf}", json.dumps(body, separators=(",", ":")).encode()))
    return out


class Service:
    def __init__(self, cfg: ServeConfig, engine: Engine, clock, *, password: str = "") -> None:
        self.cfg = cfg
        self.clock = clock
        self.ingestor = Ingestor(engine, cfg.prefix, cfg.media_dir(), clock)
        self.queue: queue.Queue[Incoming] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connect_error: str | None = None
        self.latencies: list[float] = []  # receive → commit, seconds (for the bench)
        self.batches = 0
        self._last_batches = -1
        self.acks_sent = 0
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self.forwarder = Forwarder(engine, self._send_command, clock)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=paho.MQTTv5,
                        manual_ack=True)
        c.suppress_exceptions = True
        c.enable_logger(logging.getLogger("paho"))
        c.reconnect_delay_set(1, 4)
        c.max_queued_messages_set(0)
        if cfg.username:
            c.username_pw_set(cfg.username, password or None)
        if cfg.tls_ca:
            c.tls_set(ca_certs=cfg.tls_ca, cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self._client = c

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.cfg.expiry_h() * 3600)
        props.ReceiveMaximum = self.cfg.receive_maximum
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=30, clean_start=False,
                                   properties=props)
        self._client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name="archive-writer", daemon=True)
        self._writer.start()
        self.forwarder.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the batch in hand, then leave (the session stays: the broker keeps queueing)."""
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout_s)
        self.forwarder.stop(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()
        self.ingestor.engine.dispose()

    def progressing(self) -> bool:
        """For the systemd watchdog: the writer lives and moved since the last call (or idles)."""
        alive = self._writer is not None and self._writer.is_alive()
        moved = self.batches != self._last_batches or self.queue.empty()
        self._last_batches = self.batches
        return alive and moved

    def status_line(self) -> str:
        s = self.ingestor.stats
        return (f"archived {dict(s.archived)} duplicates {s.duplicates} refused {dict(s.refused)} "
                f"queue {self.queue.qsize()} batches {self.batches}")

    # -- paho callbacks (network thread): only enqueue ------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.connect_error = f"broker refused the station: {reason_code}"
            log.error("%s", self.connect_error)
            return
        self.connect_error = None
        self.connected.set()
        log.info("connected to %s:%d as %s (session %s)", self.cfg.host, self.cfg.port, self.cfg.client_id,
                 "resumed" if flags.session_present else "new")
        client.subscribe([(topic, 1) for topic in subscriptions(self.cfg.prefix, self.cfg.share_group)])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            log.warning("disconnected from broker: %s", reason_code)
        self.connected.clear()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("broker refused subscriptions: %s", ", ".join(bad))
        else:
            log.info("subscribed (QoS 1): %s", " ".join(subscriptions(self.cfg.prefix, self.cfg.share_group)))
        self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        self.queue.put(Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.monotonic()))

    # -- writer thread ---------------------------------------------------------------------
    def _take_batch(self) -> list[Incoming]:
        try:
            first = self.queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.batch_wait_s
        while len(batch) < self.cfg.batch_max:
            try:
                batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _write_loop(self) -> None:
        pending: list[Incoming] = []
        failing = False
        while not (self._stop.is_set() and not pending):
            batch = pending or self._take_batch()
            if not batch:
                if self._stop.is_set():
                    break
                continue
            try:
                acks = self.ingestor.apply([(m.topic, m.payload) for m in batch])
            except DBAPIError as exc:  # database unreachable: keep the batch, PUBACK nothing
                if not failing:
                    log.error("archive unavailable, holding %d messages: %s", len(batch),
                              str(exc.orig).splitlines()[0] if exc.orig else exc)
                failing = True
                pending = batch
                if self._stop.wait(1.0):
                    return  # unacknowledged: the broker gives them to us (or a peer) again
                continue
            except Exception:  # a bug must not stop the archive: log, drop nothing silently
                log.exception("ingest failed for a batch of %d; they stay unacknowledged", len(batch))
                pending = batch
                if self._stop.wait(1.0):
                    return
                continue
            if failing:
                log.info("archive reachable again")
                failing = False
            pending = []
            done = time.monotonic()
            self.batches += 1
            for m in batch:
                self.latencies.append(done - m.received)
                if m.qos > 0:
                    self._client.ack(m.mid, m.qos)
            for topic, body in ack_messages(self.cfg.prefix, acks):
                self._client.publish(topic, body, qos=1)
                self.acks_sent += 1
            try:  # the rules see each event once, after it is safely archived
                self.forwarder.events_archived(self.ingestor.fresh)
            except Exception:
                log.exception("rules not evaluated for a batch")

    def _send_command(self, node: str, name: str, args: dict) -> None:
        """A rule's command to a node (QoS 1; the reply is archived like any other)."""
        self._client.publish(f"{self.cfg.prefix}/{node}/cmd/{name}", json.dumps(args), qos=1)
