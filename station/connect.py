"""One way for every station tool to reach the broker, and one set of reasons when it cannot.

Every ``camnode-station`` subcommand (and the station service) takes the same connection
options (:func:`add_connection_args`), turns them into a :class:`Connection`
(:func:`connection_from_args`: the password comes from ``--password-file``, from stdin with
``--password-file -``, or from the ``CAMNODE_MQTT_PASSWORD`` environment variable — never from
the command line, where ``ps`` shows it to every user of the machine), and opens a session
with :func:`station.mqtt_session.open_session`, which returns only once the broker has accepted
the login and every subscription. Anything else raises :class:`StationError` with one line
that says what went wrong:

* unknown host, connection refused, no answer within the timeout, TLS failure (bad CA,
  wrong name, a TLS port spoken to in clear or the reverse);
* the broker refused the login (bad user name or password, not authorised);
* the broker refused a subscription or a publish (the ACL does not allow it).

``camnode-station`` prints it as ``camnode-station: <reason>`` and exits 1; a usage mistake
(unreadable password file, ``--password`` given) is a :class:`UsageError`, exit 2.

Pure functions and values here; the session (and its threads) is :mod:`station.mqtt_session`.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
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


__all__ = ["PASSWORD_ENV", "Connection", "StationError", "UsageError", "add_connection_args",
           "connection_from_args", "make_client", "read_password", "refused_reason", "socket_reason"]
