"""A logged-in MQTT session of a station tool, shared by the parts of one program.

:func:`open_session` returns a :class:`Session` only once the broker has accepted the login and
every subscription (or raises :class:`~station.connect.StationError` with the reason). A
program with several parts that talk to the nodes — the web console's live feed, its commands,
its evidence cases' clip pulls — shares **one** session: the ward's broker binds the client id
to the user name (one connection per user), so a second connection of the same user ends the
first. :meth:`Session.start` opens a long-lived session without waiting (it connects and
reconnects in the background); :meth:`Session.listen` adds a part's subscriptions and its own
handler for as long as it needs them (a command's reply, a clip's chunks), counted per topic
filter so that parts listening to the same topic do not unsubscribe each other; and
:func:`listening` lets a function take either a :class:`~station.connect.Connection` (a
one-off tool: its own session) or a running session.

Thread: :func:`open_session`, :meth:`Session.publish` and :meth:`Session.listen` block their
caller (any thread); paho's network thread (named by ``thread_name``) runs the handlers and
reconnects after a loss.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from station.connect import Connection, StationError, make_client, refused_reason, socket_reason
from station.mqtt_routes import BASE_ID, Listener, Routes, Subscription

#: MQTT 5 DISCONNECT reason "Session taken over": the same client id (= user) connected again.
TAKEN_OVER = 142
#: A connection lost sooner than this after login counts as a quick drop.
QUICK_DROP_S = 5.0


class Session:
    """A connected, logged-in client with its subscriptions granted.

    ``on_message(msg)`` runs on paho's thread for the messages of ``subscriptions`` (and for
    any message no listener takes). After a loss paho reconnects by itself; the session
    subscribes again — its own subscriptions and its listeners' — and tells ``on_state`` and
    every listener ``(reason_or_None)`` (None = connected again).
    """

    def __init__(self, conn: Connection, subscriptions: Iterable[Subscription] = (), *,
                 on_message: Callable[[Any], None] | None = None,
                 on_state: Callable[[str | None], None] | None = None,
                 on_subscribed: Callable[[], None] | None = None, client_id: str = "",
                 partial_ok: bool = False, yield_to_same_user: bool = False,
                 thread_name: str = "") -> None:
        """``partial_ok``: a session whose subscriptions were refused in part still opens
        (:attr:`denied` lists the refused ones): a view that shows what the user may read.
        ``yield_to_same_user``: end (:attr:`ended`) rather than reconnect when the broker keeps
        dropping the connection right after login — what it does when another program logs in
        with the same user (client id = user name) — so that two programs do not knock each
        other off forever. For interactive tools; a service should keep reconnecting.
        ``thread_name``: the name of paho's network thread (docs/threads.md)."""
        self.conn = conn
        self.partial_ok = partial_ok
        self.denied: list[str] = []
        self.subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_state = on_state
        self._on_subscribed = on_subscribed
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._sub_mid: int | None = None
        self._pubacks: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._early: dict[int, Any] = {}  # PUBACKs that beat the registration of their waiter
        self.error: str | None = None
        self.opened = False
        #: set when the session ended for good after it was opened (another program logged in
        #: with the same user: the broker keeps one connection per user); ``end_reason`` says so
        self.ended = threading.Event()
        self.end_reason: str | None = None
        self._yield = yield_to_same_user
        self._up_since = 0.0
        self._quick_drops = 0
        self._thread_name = thread_name
        #: up, logged in and subscribed (what :meth:`listen` needs); ``down_reason`` says why not
        self.connected = False
        self.down_reason: str | None = None
        self.routes = Routes(self.subscriptions)
        self._sub_waits: dict[int, list[str]] = {}  # a part's SUBSCRIBE mid -> its filters
        self._sub_early: dict[int, list[Any]] = {}  # SUBACKs that beat their waiter
        self._resubscribed: set[int] = set()  # the parts' SUBSCRIBE mids after a reconnection
        #: held across a change of the routes and its SUBSCRIBE/UNSUBSCRIBE (never in a callback):
        #: the broker gets them in the order the routes changed (a part leaving a filter just as
        #: another joins it must not unsubscribe the newcomer)
        self._subs = threading.Lock()
        #: whether the broker takes subscription identifiers (its CONNACK says; MQTT 5 default yes)
        self._ids_ok = True
        c = make_client(conn, client_id)
        c.on_connect, c.on_disconnect = self._connected, self._disconnected
        c.on_subscribe, c.on_publish = self._subscribed, self._published
        c.on_message = self._message
        c.reconnect_delay_set(1, 10)
        self.client = c

    # -- paho thread -------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        if not self.opened:
            self.error = self.error or reason
            self._ready.set()
            return
        self.down_reason = reason
        self._tell(reason)

    def _tell(self, state: str | None) -> None:
        if self._on_state is not None:
            self._on_state(state)
        for lst in self.routes.listeners():
            if lst.on_state is not None:
                lst.on_state(state)

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._fail(refused_reason(self.conn, reason_code))
            if not self.opened:
                client.disconnect()
            return
        self._up_since = time.monotonic()
        self._ids_ok = getattr(properties, "SubscriptionIdentifierAvailable", 1) != 0
        plan = self.routes.plan()  # the parts' filters too: a reconnected session has lost them
        base = plan.pop(BASE_ID, [])
        for sub_id, subs in plan.items():
            _, mid = client.subscribe(subs, properties=self._identified(sub_id))
            self._resubscribed.add(mid)
        if not base:
            self._granted()
            return
        # SUBACK comes on this same thread
        _, self._sub_mid = client.subscribe(base, properties=self._identified(BASE_ID))

    def _identified(self, sub_id: int) -> Properties | None:
        """SUBSCRIBE properties naming the subscription (the broker names it in each message it
        delivers for it); none when the broker takes no identifiers (routing by filter then)."""
        if not self._ids_ok:
            return None
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = sub_id
        return props

    def _subscribed(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid in self._resubscribed:
            self._resubscribed.discard(mid)
            return
        if mid != self._sub_mid:
            self._listened(mid, reason_codes)
            return
        self._sub_mid = None
        denied = [topic for (topic, _), rc in zip(self.subscriptions, reason_codes, strict=False)
                  if rc.is_failure]
        self.denied = denied
        if denied and not (self.partial_ok and len(denied) < len(self.subscriptions)):
            self._fail(f"the broker refused {self.conn.username or 'this client'} the subscription to "
                       f"{', '.join(denied)} (not authorised)")
            if not self.opened:
                client.disconnect()
            return
        self._granted()

    def _granted(self) -> None:
        self.connected, self.down_reason = True, None
        if self.opened:
            self._tell(None)
        if self._on_subscribed is not None:
            self._on_subscribed()
        self._ready.set()

    def _listened(self, mid: int, reason_codes: list[Any]) -> None:
        """A part's SUBACK: each filter granted, or refused with the reason."""
        with self._lock:
            filters = self._sub_waits.pop(mid, None)
            if filters is None:
                self._sub_early[mid] = reason_codes
                while len(self._sub_early) > 64:
                    self._sub_early.pop(next(iter(self._sub_early)))
                return
        self._answer(filters, reason_codes)

    def _answer(self, filters: list[str], reason_codes: list[Any]) -> None:
        who = self.conn.username or "this client"
        self.routes.answer(filters, [f"the broker refused {who} the subscription to {f} (not authorised)"
                                     if rc.is_failure else None
                                     for f, rc in zip(filters, reason_codes, strict=True)])

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False
        if not self.opened:
            self._fail(f"the broker at {self.conn.where} closed the connection before accepting the login "
                       f"({reason_code}{'' if self.conn.tls_ca else '; a TLS port? give --tls-ca'})")
        elif self._taken_over(reason_code):  # reconnecting would only knock the other one off
            client.disconnect()  # stops paho's reconnect loop
            who = self.conn.username or "this user"
            self.end_reason = (f"the broker keeps dropping this connection right after login: another "
                               f"program logged in as {who}? (one connection per user: give each program "
                               "its own user)")
            self._fail(self.end_reason)
            self.ended.set()
        elif reason_code.is_failure or reason_code.value != 0:
            self._fail(f"connection to {self.conn.where} lost ({reason_code}); reconnecting")
        with self._lock:  # nothing in flight can be acknowledged any more
            for ev, box in self._pubacks.values():
                box.append("the connection dropped before the broker acknowledged it")
                ev.set()
            self._pubacks.clear()
            waiting = [f for filters in self._sub_waits.values() for f in filters]
            self._sub_waits.clear()
            self._sub_early.clear()
            self._resubscribed.clear()
            self._sub_mid = None
        if waiting:  # a part waiting for its SUBACK hears why now, not after its timeout
            self.routes.answer(waiting, ["the connection dropped before the broker answered"] * len(waiting))

    def _taken_over(self, reason_code: Any) -> bool:
        """MQTT 5 says "session taken over" (142); mosquitto 2.0 just closes the socket, so
        three drops in a row within seconds of logging in count as the same."""
        if not self._yield:
            return False
        if reason_code.value == TAKEN_OVER:
            return True
        self._quick_drops = self._quick_drops + 1 if time.monotonic() - self._up_since < QUICK_DROP_S else 0
        return self._quick_drops >= 3

    def _published(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            waiting = self._pubacks.pop(mid, None)
            if waiting is None:
                self._early[mid] = reason_code
                while len(self._early) > 256:  # QoS 0 publishes are "acknowledged" too: bounded
                    self._early.pop(next(iter(self._early)))
        if waiting is not None:
            ev, box = waiting
            box.append(reason_code)
            ev.set()

    def _message(self, client, userdata, msg) -> None:
        ids = getattr(msg.properties, "SubscriptionIdentifier", None) if msg.properties else None
        listeners, base = self.routes.targets(msg.topic, ids)
        for lst in listeners:
            lst.handler(msg)
        # the program's own subscriptions; with no identifiers, what no part took. A message for
        # a subscription no longer held (a part's last chunk after it left) goes to nobody.
        if self._on_message is not None and (base or (not ids and not listeners)):
            self._on_message(msg)

    # -- caller's thread ----------------------------------------------------------------------
    def open(self) -> Session:
        try:
            self.client.connect(self.conn.host, self.conn.real_port, keepalive=30)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise StationError(socket_reason(self.conn, exc)) from None
        self._loop_start()
        if not self._ready.wait(self.conn.timeout_s):
            self.error = self.error or (f"no MQTT answer from {self.conn.where} within "
                                        f"{self.conn.timeout_s:g} s")
        if self.error:
            self.close()
            raise StationError(self.error)
        self.opened = True
        return self

    def start(self) -> Session:
        """Open without waiting: connect (and, after any loss or refusal, reconnect) in the
        background; :attr:`connected`, ``on_state`` and the listeners say how it goes. For a
        service that must come up while its broker is down."""
        self.opened = True
        self.down_reason = f"connecting to {self.conn.where}"
        self.client.connect_async(self.conn.host, self.conn.real_port, keepalive=30)
        self._loop_start()
        return self

    def _loop_start(self) -> None:
        self.client.loop_start()
        thread = getattr(self.client, "_thread", None)
        if self._thread_name and thread is not None:
            thread.name = self._thread_name

    @contextlib.contextmanager
    def listen(self, subscriptions: Iterable[Subscription], handler: Callable[[Any], None],
               on_state: Callable[[str | None], None] | None = None) -> Iterator[Session]:
        """Subscribe (what no other part already has) and hand the messages delivered for these
        subscriptions to ``handler`` on paho's thread until the ``with`` block ends; ``on_state``
        hears of losses and reconnections meanwhile (see :mod:`station.mqtt_routes`). Returns
        once the broker granted every filter; raises :class:`StationError` when the session is
        down, the broker refuses a filter or does not answer."""
        subs = list(subscriptions)
        if not self.connected:
            raise StationError(f"not connected to the broker: {self.down_reason or 'connecting'}")
        lst = Listener(tuple(f for f, _ in subs), handler, on_state)
        added = False
        try:
            with self._subs:
                grants, sub_id, new = self.routes.add(lst, subs)
                added = True
                if new:
                    # not under self._lock (paho may hold its own locks while it calls back); an
                    # answer quicker than this thread waits in _sub_early
                    rc, mid = self.client.subscribe(new, properties=self._identified(sub_id))
                    with self._lock:
                        early = self._sub_early.pop(mid, None) if rc == paho.MQTT_ERR_SUCCESS else None
                        if rc == paho.MQTT_ERR_SUCCESS and early is None:
                            self._sub_waits[mid] = [f for f, _ in new]
                    if rc != paho.MQTT_ERR_SUCCESS:
                        self.routes.answer([f for f, _ in new], [f"cannot subscribe to {f}: "
                                                                 f"{paho.error_string(rc)}" for f, _ in new])
                    elif early is not None:
                        self._answer([f for f, _ in new], early)
            for (f, _), g in zip(subs, grants, strict=True):
                if not g.answered.wait(self.conn.timeout_s):
                    raise StationError(f"the broker did not answer the subscription to {f} within "
                                       f"{self.conn.timeout_s:g} s")
                if g.error:
                    raise StationError(g.error)
            yield self
        finally:
            if added:
                with self._subs:
                    gone = self.routes.remove(lst)
                    if gone and self.connected:
                        self.client.unsubscribe(gone)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
                timeout_s: float | None = None) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK; a refusal raises."""
        ev, box = threading.Event(), []
        # not under self._lock: paho calls on_publish holding its own message lock (deadlock)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise StationError(f"cannot publish to {topic}: {paho.error_string(info.rc)}")
        with self._lock:
            if info.mid in self._early:
                box.append(self._early.pop(info.mid))
                ev.set()
            else:
                self._pubacks[info.mid] = (ev, box)
        wait = self.conn.timeout_s if timeout_s is None else timeout_s
        if not ev.wait(wait):
            with self._lock:
                self._pubacks.pop(info.mid, None)
            raise StationError(f"the broker did not acknowledge {topic} within {wait:g} s")
        rc = box[0]
        if isinstance(rc, str):
            raise StationError(f"{topic}: {rc}")
        if rc.is_failure:
            raise StationError(f"the broker refused {self.conn.username or 'this client'} publishing to "
                               f"{topic}: {rc} (not authorised)")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Via = Connection | Session



def open_session(conn: Connection, subscriptions: Iterable[Subscription] = (), **kw: Any) -> Session:
    """Connect, log in and subscribe, or raise :class:`StationError` with the reason."""
    return Session(conn, subscriptions, **kw).open()


def connection_of(via: Via) -> Connection:
    """Where and as whom ``via`` connects (its topic prefix, for one)."""
    return via.conn if isinstance(via, Session) else via


def listening(via: Via, subscriptions: Iterable[Subscription], handler: Callable[[Any], None],
              on_state: Callable[[str | None], None] | None = None
              ) -> contextlib.AbstractContextManager[Session]:
    """A session that hands ``subscriptions``' messages to ``handler`` for a ``with`` block:
    ``via``'s own listener when it is a running :class:`Session` (a program's shared one),
    else a session of its own for ``via``, the :class:`Connection` (a one-off tool)."""
    if isinstance(via, Session):
        return via.listen(subscriptions, handler, on_state)
    return open_session(via, subscriptions, on_message=handler, on_state=on_state)


