"""The node's MQTT connection (paho-mqtt 2, MQTT 5).

* Connects in the background and retries forever with exponential backoff (1 s → reconnect_max_s):
  a broker that is down at start, or restarts, is picked up without the node noticing —
  the recorder never waits for the network.
* Publishes a retained ``status`` = online on every (re)connect and registers a retained
  ``status`` = offline (reason "lost") as last will, so the station learns of an abrupt death.
* ``close()`` publishes ``status`` = offline (reason "shutdown") and waits up to 2 s for it.
* ``send_durable`` goes through an :class:`~node.link.outbox.Outbox` (SQLite): events reach the
  station after a broker outage, and after a restart in between. With ``archive_ack`` (the
  default) an event or snapshot row is deleted only when the station's archive acknowledges it
  on ``<p>/<id>/ack/event|snapshot`` after its database commit — a broker that restarts
  without persistence, or a station that was away, loses nothing. Until then the row stays
  claimed; it is sent again after ``ack_resend_s`` (doubling per attempt, at most an hour) and
  after every reconnect. Other durable messages (``lost`` notices), or all with
  ``archive_ack`` off, are deleted on the broker's PUBACK.
* Command messages on ``<p>/<id>/cmd/<name>`` go to ``on_command(name, payload_bytes,
  retained)``; it runs on paho's network thread and must return quickly.

Thread: paho's network thread (``paho-mqtt-client-…``) runs callbacks; one ``outbox-drain``
thread (started by ``start``, ended by ``close``) publishes outbox rows when woken — on every
(re)connect and when the last row in flight is acknowledged; one ``outbox-resend`` thread
(with ``archive_ack``) gives back rows whose archive acknowledgement is overdue and wakes it;
``publish`` is safe from any thread.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hw.redact import redact_obj
from node import __version__
from node.link import topics as t
from node.link.outbox import Outbox

log = logging.getLogger(__name__)

#: ``(name, payload, retained)``: ``retained`` is True for a message the broker kept and
#: delivers again on every (re)subscription — it must not run again (issue 8, item 24).
CommandHandler = Callable[[str, bytes, bool], None]

#: PUBACK reasons that retrying cannot fix (not authorised, bad topic, bad payload): the outbox
#: row is dropped and the error reported; any other failure keeps the row for later.
PERMANENT_REJECTIONS = {0x87, 0x90, 0x99}
#: A connect attempt into a link that drops packets (a 4G cell without carrier) gives up after
#: this long; with the backoff's ceiling (``mqtt.reconnect_max_s``, 15 s by default) a link that
#: comes back is used within ~20 s plus the TCP, TLS and MQTT handshakes (issue 15: heartbeats
#: back within 30 s of the link's return; at 30 s the worst case was ~37 s).
CONNECT_TIMEOUT_S = 5.0


def _encode(payload: dict[str, Any]) -> bytes:
    """Every JSON payload leaves with credentials masked (camera URLs in faults, diag, replies)."""
    return t.encode(redact_obj(payload))


class MqttLink:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        node_id: str,
        prefix: str,
        clock,
        keepalive_s: int = 30,
        reconnect_max_s: float = 15.0,
        username: str = "",
        password: str = "",
        tls_ca: str = "",
        tls_cert: str = "",
        tls_key: str = "",
        on_command: CommandHandler | None = None,
        outbox: Outbox | None = None,
        config_error: str | None = None,
        archive_ack: bool = True,
        ack_resend_s: float = 60.0,
    ) -> None:
        self.topics = t.Topics(prefix, node_id)
        self._clock = clock
        self._host, self._port, self._keepalive = host, port, keepalive_s
        self._on_command = on_command
        self._connected = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None
        self.published = 0
        self.dropped_offline = 0
        self.outbox = outbox
        self._inflight: dict[int, int] = {}  # paho mid → outbox row id
        self.archive_ack, self.ack_resend_s = archive_ack, ack_resend_s
        self.archive_acks = 0
        self._row_keys: dict[int, str | None] = {}  # rows published: their archive-ack key
        self._sent: dict[int, tuple[float, int]] = {}  # awaiting the archive: (PUBACK time, attempts)
        self._published_upto: dict[str, int] = {}  # ack key → newest row id published under it
        self._early_acks: dict[int, float] = {}  # PUBACKs that beat _inflight registration
        self._rejected: dict[int, str] = {}  # mid → failure reason code (for publish_paced)
        self._ack_lock = threading.Lock()  # never held while calling paho
        self._drain_lock = threading.Lock()
        self._drain_wake = threading.Event()  # connected, or the last row in flight acknowledged
        self._closing = threading.Event()
        self._drainer: threading.Thread | None = None
        #: set once the command subscription is acknowledged (commands can be received)
        self.subscribed = threading.Event()
        #: a setting that makes connecting impossible (unreadable password/CA file): reported,
        #: and the node records without a link rather than not at all
        self.config_error = config_error
        bad_prefix = t.check_prefix(prefix)
        if bad_prefix:  # no topic could be published or subscribed: say so instead of idling
            self.config_error = f"mqtt.topic_prefix {prefix!r}: {bad_prefix}"
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"camnode-{node_id}",
                        protocol=paho.MQTTv5)
        c.suppress_exceptions = True  # a failing callback must never kill the network thread
        c.enable_logger(logging.getLogger("paho"))  # ...and paho then logs what it suppressed
        c.reconnect_delay_set(min_delay=1, max_delay=max(1, int(reconnect_max_s)))
        c.connect_timeout = CONNECT_TIMEOUT_S
        if username:
            c.username_pw_set(username, password or None)
        self._tls_ca, self._tls_cert, self._tls_key = tls_ca, tls_cert, tls_key
        if tls_ca:
            try:
                c.tls_set(ca_certs=tls_ca, certfile=tls_cert or None, keyfile=tls_key or None,
                          cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.config_error = f"mqtt.tls_ca {tls_ca}: {getattr(exc, 'strerror', None) or exc}"
        c.will_set(self.topics.status, t.status_payload("offline", clock.utc(), __version__, "lost"),
                   qos=1, retain=True)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message
        c.on_connect_fail = self._handle_connect_fail
        c.on_publish = self._handle_publish
        c.on_subscribe = lambda *_: self.subscribed.set()
        self._client = c
        if self.config_error:
            self.last_error = self.config_error

    @classmethod
    def from_config(cls, mqtt, node_id: str, clock, on_command: CommandHandler | None = None,
                    outbox: Outbox | None = None) -> MqttLink:
        password, error = mqtt.password, None
        if mqtt.password_file:
            try:
                password = Path(mqtt.password_file).read_text().strip()
            except OSError as exc:
                error = f"mqtt.password_file {mqtt.password_file}: {exc.strerror or exc}"
        return cls(host=mqtt.host, port=mqtt.port, node_id=node_id, prefix=mqtt.topic_prefix,
                   clock=clock, keepalive_s=mqtt.keepalive_s, reconnect_max_s=mqtt.reconnect_max_s,
                   username=mqtt.username, password=password, tls_ca=mqtt.tls_ca,
                   tls_cert=mqtt.tls_cert, tls_key=mqtt.tls_key,
                   on_command=on_command, outbox=outbox, config_error=error,
                   archive_ack=mqtt.archive_ack, ack_resend_s=mqtt.ack_resend_s)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self.config_error:
            log.error("MQTT link not started: %s", self.config_error)
            return
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive,
                                   clean_start=True, properties=props)
        if self.outbox is not None:
            self._drainer = threading.Thread(target=self._drain_loop, name="outbox-drain", daemon=True)
            self._drainer.start()
        self._client.loop_start()
        if self.outbox is not None and self.archive_ack:
            threading.Thread(target=self._resend_loop, name="outbox-resend", daemon=True).start()

    def _resend_loop(self) -> None:
        """The ``outbox-resend`` thread: now and then, rows the archive has not acknowledged in
        time are given back and the drain thread woken; ends with :meth:`close`."""
        while not self._closing.wait(min(5.0, self.ack_resend_s / 2)):
            try:
                self.resend_due()
            except Exception:  # never let the resend thread die silently
                log.exception("outbox resend failed")

    def resend_due(self) -> list[int]:
        """Release the rows whose archive acknowledgement is overdue (they go out again)."""
        now = self._clock.monotonic()
        with self._ack_lock:
            due = [rid for rid, (ts, n) in self._sent.items() if now - ts >= self._backoff(n)]
        if due and self.outbox is not None:
            self.outbox.release(due)
            self._drain_wake.set()
        return due

    def _backoff(self, attempts: int) -> float:
        return min(self.ack_resend_s * 2 ** max(0, attempts - 1), 3600.0)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the drain thread, publish a clean ``offline`` (if connected), disconnect, stop
        the network thread."""
        self._closing.set()
        self._drain_wake.set()
        if self._drainer is not None:
            self._drainer.join(timeout_s)
        if self._connected.is_set():
            info = self._client.publish(
                self.topics.status,
                t.status_payload("offline", self._clock.utc(), __version__, "shutdown"),
                qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not confirmed: %s", exc)
        if not self.config_error:
            self._client.disconnect()
            self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    # -- publishing ----------------------------------------------------------------
    def publish(self, topic: str, payload: dict[str, Any] | bytes, *, qos: int = 0,
                retain: bool = False) -> bool:
        """Queue a message; returns False if it was dropped because the link is down (QoS 0)."""
        data = payload if isinstance(payload, bytes) else _encode(payload)
        if not self._connected.is_set() and qos == 0:
            self.dropped_offline += 1
            return False
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        if info.rc == paho.MQTT_ERR_SUCCESS:
            self.published += 1
            return True
        return qos > 0  # QoS>0 is kept in paho's in-memory queue and sent on reconnect

    def publish_paced(self, topic: str, data: bytes, timeout_s: float = 30.0) -> bool:
        """QoS 1 publish that waits for the broker's PUBACK: streams large things (a clip) one
        chunk at a time instead of queueing them all in memory. False if not delivered."""
        if not self._connected.is_set():
            return False
        info = self._client.publish(topic, data, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        with self._ack_lock:
            rejected = self._rejected.pop(info.mid, None)
        if rejected is not None:  # e.g. 135: the broker's ACL does not allow this topic
            self.last_error = f"broker rejected {topic}: {rejected}"
            return False
        self.published += 1
        return info.is_published()

    def send_durable(self, topic: str, payload: dict[str, Any] | bytes) -> None:
        """Queue a message that must arrive (QoS 1, survives outages and restarts)."""
        data = payload if isinstance(payload, bytes) else _encode(payload)
        if self.outbox is None:
            self.publish(topic, data, qos=1)
            return
        key = self.topics.ack_key(topic, data) if self.archive_ack else None
        try:
            self.outbox.put(topic, data, 1, key)
        except sqlite3.Error as exc:  # the card is full or failing: still try to deliver, in memory
            self.last_error = f"outbox: {exc}"
            log.error("outbox write failed (%s): sending without persistence", exc)
            self.publish(topic, data, qos=1)
            return
        if self._connected.is_set():
            self._drain()

    def _drain_loop(self) -> None:
        """The ``outbox-drain`` thread: one drain each time it is woken, until :meth:`close`."""
        while True:
            self._drain_wake.wait()
            self._drain_wake.clear()
            if self._closing.is_set():
                return
            try:
                self._drain()
            except Exception:  # never let the one drain thread die
                log.exception("outbox drain failed")

    def _drain(self) -> None:
        """Publish what the outbox holds and is not yet in flight (any thread).

        Rows are claimed from the outbox (never two senders for one row) and stay claimed until
        acknowledged or given back: see :class:`~node.link.outbox.Outbox`."""
        if self.outbox is None:
            return
        with self._drain_lock:
            if not self._connected.is_set():
                return
            try:
                rows = self.outbox.claim(100)
            except sqlite3.Error as exc:
                self.last_error = f"outbox: {exc}"
                return
            for n, (row_id, topic, payload, qos) in enumerate(rows):
                if not self._connected.is_set():
                    self.outbox.release(r[0] for r in rows[n:])
                    return
                key = self.topics.ack_key(topic, payload) if self.archive_ack else None
                info = self._client.publish(topic, payload, qos=qos)
                # NO_CONN: the link dropped under us, but paho keeps the message queued and sends
                # it on reconnect — it is in flight like any other (sending it again would
                # duplicate it)
                if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                    self.outbox.release(r[0] for r in rows[n:])
                    return
                with self._ack_lock:
                    self._row_keys[row_id] = key
                    if key is not None:
                        self._published_upto[key] = max(row_id, self._published_upto.get(key, 0))
                    seen = self._early_acks.pop(info.mid, None)
                    acked = seen is not None and time.monotonic() - seen < 10.0
                    if not acked:
                        self._inflight[info.mid] = row_id
                if acked:
                    self._puback(row_id)
                self.published += 1

    def health(self) -> dict[str, Any]:
        h = {"connected": self.connected, "connects": self.connects,
             "disconnects": self.disconnects, "published": self.published,
             "dropped_offline": self.dropped_offline, "last_error": self.last_error}
        if self.outbox is not None:
            try:
                h["outbox"] = len(self.outbox)
                h["outbox_dropped"] = self.outbox.dropped  # persisted: survives restarts
                with self._ack_lock:
                    h["awaiting_archive"] = len(self._sent)
                h["archive_acks"] = self.archive_acks
            except sqlite3.Error as exc:
                h["outbox"] = f"error: {exc}"
        return h

    # -- paho callbacks (network thread) -------------------------------------------
    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"connect refused: {reason_code}"
            log.warning("broker refused connection: %s", reason_code)
            return
        self.connects += 1
        self._connected.set()
        self.last_error = None
        log.info("connected to broker %s:%d", self._host, self._port)
        client.publish(self.topics.status, t.status_payload("online", self._clock.utc(), __version__),
                       qos=1, retain=True)
        subs = [(self.topics.cmd("#"), 1)]
        if self.archive_ack and self.outbox is not None:
            subs.append((self.topics.ack("#"), 1))
        client.subscribe(subs)
        # the broker may have lost what it had not delivered (restart without persistence):
        # every row awaiting the archive goes out again
        with self._ack_lock:
            waiting = list(self._sent)
            self._sent.clear()
        if waiting and self.outbox is not None:
            self.outbox.release(waiting)
        # rows in flight stay mapped: paho resends its unacknowledged QoS 1 messages with the same
        # ids after a reconnect, so their PUBACKs still delete the rows (no duplicate sends);
        # rows never published yet go out now (on the drain thread: never on paho's)
        self._drain_wake.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            self.disconnects += 1
            log.warning("disconnected from broker: %s", reason_code)
        self._connected.clear()

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        now = time.monotonic()
        failed = bool(getattr(reason_code, "is_failure", False))
        with self._ack_lock:
            if failed:
                self._rejected[mid] = str(reason_code)
                while len(self._rejected) > 256:
                    self._rejected.pop(next(iter(self._rejected)))
            row_id = self._inflight.pop(mid, None)
            if row_id is None:  # not (yet) known: remember briefly (drain may still register it)
                self._early_acks[mid] = now
                for old in [m for m, ts in self._early_acks.items() if now - ts > 10.0]:
                    del self._early_acks[old]
            idle = not self._inflight
        if row_id is None:
            return
        if failed:
            self.last_error = f"broker rejected a queued message: {reason_code}"
            log.error("%s", self.last_error)
            if getattr(reason_code, "value", 0) not in PERMANENT_REJECTIONS:
                if self.outbox is not None:  # temporary (quota exceeded...): sent again later
                    self.outbox.release([row_id])
                return
        self._puback(row_id)
        if idle:
            self._drain_wake.set()

    def _puback(self, row_id: int) -> None:
        """The broker has the row: delete it, or (an archive acknowledgement is expected) keep it
        claimed until that comes or the resend time is up."""
        with self._ack_lock:
            key = self._row_keys.pop(row_id, None)
            if key is not None:
                attempts = self._sent.get(row_id, (0.0, 0))[1]
                self._sent[row_id] = (self._clock.monotonic(), attempts + 1)
        if key is None:
            self._done(row_id)

    def _handle_ack(self, leaf: str, data: bytes) -> None:
        """The archive committed these: their outbox rows go (paho's thread)."""
        try:
            keys = t.ack_keys(leaf, t.decode(data, limit=1 << 20))
        except ValueError as exc:
            log.warning("unreadable archive acknowledgement on ack/%s: %s", leaf, exc)
            return
        if self.outbox is None:
            return
        for key in keys:
            with self._ack_lock:
                upto = self._published_upto.get(key)
            try:
                gone = self.outbox.acknowledge(key, upto)
            except sqlite3.Error as exc:  # failing card: the row is sent again, the archive dedups
                self.last_error = f"outbox: {exc}"
                log.error("outbox delete failed: %s", exc)
                continue
            with self._ack_lock:
                for rid in gone:
                    self._sent.pop(rid, None)
                    self._row_keys.pop(rid, None)
                self.archive_acks += len(gone)

    def _done(self, row_id: int) -> None:
        try:
            if self.outbox is not None:
                self.outbox.done(row_id)
        except sqlite3.Error as exc:  # full or failing card: the row is sent again later
            self.last_error = f"outbox: {exc}"
            log.error("outbox delete failed: %s", exc)

    def _handle_connect_fail(self, client, userdata) -> None:
        self.last_error = self._diagnose()

    def _diagnose(self) -> str:
        """Why the broker cannot be reached, in words for a technician (paho does not say).

        Runs on paho's thread after a failed attempt (so at most once per backoff step): one
        TCP connect and, with TLS, one handshake, each bounded to 2 s.
        """
        where = f"broker {self._host}:{self._port}"
        try:
            with socket.create_connection((self._host, self._port), timeout=2) as sock:
                if self._tls_ca:
                    ctx = ssl.create_default_context(cafile=self._tls_ca)
                    if self._tls_cert:
                        ctx.load_cert_chain(self._tls_cert, self._tls_key or None)
                    with ctx.wrap_socket(sock, server_hostname=self._host):
                        pass
        except ssl.SSLCertVerificationError as exc:
            return f"{where}: TLS certificate rejected ({exc.verify_message})"
        except ssl.SSLError as exc:
            return f"{where}: TLS handshake failed ({exc.reason or exc})"
        except OSError as exc:
            return f"{where} unreachable: {exc.strerror or exc}"
        return f"{where} accepted TCP but the MQTT connection failed"

    def _handle_message(self, client, userdata, msg) -> None:
        ack_prefix = self.topics.ack("")
        if msg.topic.startswith(ack_prefix):
            self._handle_ack(msg.topic[len(ack_prefix):], bytes(msg.payload))
            return
        prefix = self.topics.cmd("")
        if not msg.topic.startswith(prefix) or self._on_command is None:
            return
        try:
            self._on_command(msg.topic[len(prefix):], bytes(msg.payload), bool(msg.retain))
        except Exception:
            log.exception("command handler failed for %s", msg.topic)
