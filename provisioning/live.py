"""A node's live-view credentials: the relay's address and the node's own stream password.

The station's relay accepts a node's push only with ``HMAC-SHA256(station secret, "node:<id>")``
(:func:`station.live.credentials.node_password`). Provisioning reads the station's secret file
(``<station dir>/live-secret``, given by path: never on a command line), derives that one
node's password and writes it to ``<node dir>/live.password`` (0600). The secret itself never
goes into the ward's folder or onto a card: a stolen card gives away one node's stream login,
which retiring the node (the relay reads the ward's active nodes) takes back.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from provisioning.errors import ProvisionError
from station.live.credentials import node_password, read_secret

PASSWORD_FILE = "live.password"


def check_relay(value: str) -> str:
    """``rtsp://HOST:PORT`` (IPv6 in brackets), nothing else: returns it without a trailing
    slash. A path, credentials, query or another scheme is refused, and so is a missing port:
    RTSP's default (554) is not where ``camnode-station relay`` listens (8554 unless told), and a
    node pointed there would push into nothing until someone climbed the pole."""
    bad = ProvisionError(f"--relay {value!r}: expected rtsp://HOST:PORT (the station relay's address, "
                         "e.g. rtsp://10.8.0.1:8554)")
    try:
        u = urlsplit(value)
        port = u.port
    except ValueError:
        raise bad from None
    if (u.scheme != "rtsp" or not u.hostname or u.username is not None or u.password is not None
            or u.path not in ("", "/") or u.query or u.fragment or port == 0
            or any(c.isspace() for c in value)):
        raise bad
    if ":" in u.hostname and not u.netloc.startswith("["):
        raise bad
    if port is None:
        raise ProvisionError(f"--relay {value!r}: give the relay's port (camnode-station relay listens on "
                             f"8554 unless --rtsp-port says otherwise), e.g. {value.rstrip('/')}:8554")
    return f"rtsp://{u.netloc}"


def station_secret(path: Path) -> bytes:
    """The station's live secret from its file, or a one-line ProvisionError."""
    try:
        return read_secret(path)
    except ValueError as exc:
        raise ProvisionError(f"--live-secret {exc}") from None


def password_line(secret: bytes, node_id: str) -> bytes:
    """The content of the node's ``live.password``."""
    return (node_password(secret, node_id) + "\n").encode()
