"""One way for every station tool to reach the broker, and one set of reasons when it cannot.

Every ``camnode-station`` subcommand (and the station service) takes the same connection
options (:func:`add_connection_args`), turns them into a :class:`Connection`
(:func:`connection_from_args`: the password comes from ``--password-file``, from stdin with
``--password-file -``, or from the ``CAMNODE_MQTT_PASSWORD`` environment variable — never from
the command line, where ``ps`` shows it to every user of the machine), and opens a
:class:`Session` with :func:`open_session`, which returns only once the broker has accepted
the login and every subscription. Anything else raises :class:`StationError` with one line
that says what went wrong:

* unknown host, connection refused, no answer within the timeout, TLS failure (bad CA,
  wrong name, a TLS port spoken to in clear or the reverse);
* the broker refused the login (bad user name or password, not authorised);
* the broker refused a subscription or a publish (the ACL does not allow it).

``camnode-station`` prints it as ``camnode-station: <reason>`` and exits 1; a usage mistake
(unreadable password file, ``--password`` given) is a :class:`UsageError`, exit 2.

Thread: :func:`open_session` and :meth:`Session.publish` block the caller; paho's network
thread runs the callbacks (and reconnects after a loss once the session was opened).
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

#: Environment variable a station tool reads its MQTT password from (e.g. set by systemd's
#: ``LoadCredential``/``EnvironmentFile``), when no ``--password-file`` is given.
PASSWORD_ENV = "CAMNODE_MQTT_PASSWORD"

#: The broker's TLS port (provisioning's default) and the plain one.
TLS_PORT, PLAIN_PORT = 8883, 1883


class StationError(RuntimeError):
    """A station tool could not do what was asked; ``str()`` is the one-line reason."""

    exit_code = 1


class UsageError(StationError):
    """The command line itself is wrong (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Connection:
    """Where and as whom a station tool connects. ``port`` 0 = 8883 with TLS, else 1883."""

    host: str = "127.0.0.1"
    port: int = 0
    prefix: str = "camnode"
    username: str = ""
    password: str = field(default="", repr=False)
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    timeout_s: float = 10.0

    @property
    def real_port(self) -> int:
        return self.port or (TLS_PORT if self.tls_ca else PLAIN_PORT)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.real_port}"


class _RefusePassword(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        parser.exit(2, f"{parser.prog}: {option_string} is not accepted: a password on the command line "
                       f"is visible to every user (ps). Use --password-file FILE, --password-file - "
                       f"(stdin) or the {PASSWORD_ENV} environment variable\n")


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """The connection options every station subcommand shares."""
    g = p.add_argument_group("broker connection")
    g.add_argument("--host", default="127.0.0.1", help="the ward's broker (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=0,
                   help=f"default {TLS_PORT} with --tls-ca, else {PLAIN_PORT}")
    g.add_argument("--prefix", default="camnode", help="topic prefix of the ward")
    g.add_argument("--username", default="", help="your broker user (e.g. station-a, tech-an)")
    g.add_argument("--password-file", default="",
                   help=f"file whose first line is the password ('-': read it from stdin); "
                   f"default: the {PASSWORD_ENV} environment variable")
    g.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)
    g.add_argument("--tls-ca", default="", help="the ward's CA certificate: connect with TLS")
    g.add_argument("--tls-cert", default="", help="your client certificate (when the ward requires one)")
    g.add_argument("--tls-key", default="", help="its private key")
    g.add_argument("--connect-timeout", type=float, default=10.0,
                   help="give up when the broker does not answer for this long (s)")


def read_password(source: str, *, stdin: Any = None, env: dict[str, str] | None = None) -> str:
    """The password from a file (first line), ``-`` (stdin) or the environment; '' when none."""
    env = os.environ if env is None else env
    if source == "-":
        line = (stdin or sys.stdin).readline()
        if not line.strip():
            raise UsageError("--password-file -: nothing on stdin")
        return line.strip()
    if source:
        try:
            lines = Path(source).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--password-file {source}: {getattr(exc, 'strerror', None) or exc}") from None
        if not lines or not lines[0].strip():
            raise UsageError(f"--password-file {source}: the file is empty")
        return lines[0].strip()
    return env.get(PASSWORD_ENV, "")


def connection_from_args(args: argparse.Namespace) -> Connection:
    for opt in ("tls_ca", "tls_cert", "tls_key"):
        path = getattr(args, opt, "")
        if path and not Path(path).is_file():
            raise UsageError(f"--{opt.replace('_', '-')} {path}: no such file")
    if bool(getattr(args, "tls_cert", "")) != bool(getattr(args, "tls_key", "")):
        raise UsageError("--tls-cert and --tls-key go together")
    if args.connect_timeout <= 0:
        raise UsageError("--connect-timeout must be more than 0")
    if args.port and not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: not a TCP port")
    return Connection(host=args.host, port=args.port, prefix=args.prefix, username=args.username,
                      password=read_password(args.password_file), tls_ca=args.tls_ca,
                      tls_cert=getattr(args, "tls_cert", ""), tls_key=getattr(args, "tls_key", ""),
                      timeout_s=args.connect_timeout)


def make_client(conn: Connection, client_id: str = "") -> paho.Client:
    """An MQTT 5 client for ``conn`` (TLS when it has a CA). Callback errors are logged by paho
    instead of killing its network thread."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.suppress_exceptions = True
    c.connect_timeout = conn.timeout_s
    if conn.username:
        c.username_pw_set(conn.username, conn.password or None)
    if conn.tls_ca:
        try:
            c.tls_set(ca_certs=conn.tls_ca, certfile=conn.tls_cert or None, keyfile=conn.tls_key or None,
                      cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"TLS files unusable ({conn.tls_ca}): {_ssl_text(exc)}") from None
    return c


def _ssl_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return getattr(exc, "strerror", None) or str(exc)


def socket_reason(conn: Connection, exc: BaseException) -> str:
    """The one-line reason for an exception raised while opening the connection."""
    if isinstance(exc, socket.gaierror):
        return f"unknown host {conn.host!r} ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {conn.where} (no broker listening there?)"
    if isinstance(exc, ssl.SSLError):
        hint = "" if conn.tls_ca else " (a TLS port? give --tls-ca)"
        return f"TLS failure with {conn.where}: {_ssl_text(exc)}{hint}"
    if conn.tls_ca and isinstance(exc, ConnectionResetError | BrokenPipeError):
        return f"TLS failure with {conn.where}: the server dropped the TLS handshake (not a TLS port?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {conn.where} within {conn.timeout_s:g} s"
    if isinstance(exc, OSError):
        return f"cannot reach {conn.where}: {exc.strerror or exc}"
    return f"cannot connect to {conn.where}: {type(exc).__name__}: {exc}"


def refused_reason(conn: Connection, reason_code: Any) -> str:
    who = conn.username or "an anonymous client"
    return f"the broker at {conn.where} refused {who}: {reason_code} (not authorised)"


Subscription = tuple[str, int]

#: MQTT 5 DISCONNECT reason "Session taken over": the same client id (= user) connected again.
TAKEN_OVER = 142
#: A connection lost sooner than this after login counts as a quick drop.
QUICK_DROP_S = 5.0


class Session:
    """A connected, logged-in client with its subscriptions granted.

    ``on_message(msg)`` runs on paho's thread. After a loss paho reconnects by itself; the
    session subscribes again and tells ``on_state(reason_or_None)`` (None = connected again).
    """

    def __init__(self, conn: Connection, subscriptions: Iterable[Subscription] = (), *,
                 on_message: Callable[[Any], None] | None = None,
                 on_state: Callable[[str | None], None] | None = None,
                 on_subscribed: Callable[[], None] | None = None, client_id: str = "",
                 partial_ok: bool = False, yield_to_same_user: bool = False) -> None:
        """``partial_ok``: a session whose subscriptions were refused in part still opens
        (:attr:`denied` lists the refused ones): a view that shows what the user may read.
        ``yield_to_same_user``: end (:attr:`ended`) rather than reconnect when the broker keeps
        dropping the connection right after login — what it does when another program logs in
        with the same user (client id = user name) — so that two programs do not knock each
        other off forever. For interactive tools; a service should keep reconnecting."""
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
        elif self._on_state is not None:
            self._on_state(reason)

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._fail(refused_reason(self.conn, reason_code))
            if not self.opened:
                client.disconnect()
            return
        self._up_since = time.monotonic()
        if not self.subscriptions:
            self._granted()
            return
        _, self._sub_mid = client.subscribe(self.subscriptions)  # SUBACK comes on this same thread

    def _subscribed(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._sub_mid:
            return
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
        if self.opened and self._on_state is not None:
            self._on_state(None)
        if self._on_subscribed is not None:
            self._on_subscribed()
        self._ready.set()

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
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
        if self._on_message is not None:
            self._on_message(msg)

    # -- caller's thread ----------------------------------------------------------------------
    def open(self) -> Session:
        try:
            self.client.connect(self.conn.host, self.conn.real_port, keepalive=30)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise StationError(socket_reason(self.conn, exc)) from None
        self.client.loop_start()
        if not self._ready.wait(self.conn.timeout_s):
            self.error = self.error or (f"no MQTT answer from {self.conn.where} within "
                                        f"{self.conn.timeout_s:g} s")
        if self.error:
            self.close()
            raise StationError(self.error)
        self.opened = True
        return self

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


def open_session(conn: Connection, subscriptions: Iterable[Subscription] = (), **kw: Any) -> Session:
    """Connect, log in and subscribe, or raise :class:`StationError` with the reason."""
    return Session(conn, subscriptions, **kw).open()


__all__ = ["PASSWORD_ENV", "Connection", "Session", "StationError", "UsageError", "add_connection_args",
           "connection_from_args", "make_client", "open_session", "read_password"]
