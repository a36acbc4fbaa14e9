"""A ward's folder on the installer's desk: the one record of who may use its broker.

``ward.json`` lists every broker user with its role, prefix and state; the broker's password
file, ACL and certificates are derived from it after each change, under a lock (two
installers on a shared folder cannot interleave). Every change is explicit:

* adding a user whose name is taken (by any role), reserved, or retired is refused
  (:class:`~provisioning.errors.Conflict`, exit 3), and nothing is written;
* re-running the same request changes nothing (no new password);
* a password changes only by :meth:`Ward.rotate`; a user leaves only by :meth:`Ward.retire`
  (the name stays taken, so footage signed under it stays attributable).

Layout::

    ward.json                 the registry (no secrets; the live relay's address and which
                              nodes push to it, read by ``camnode-station relay --ward``)
    pki/ca.key, pki/ca.crt    the site CA (its key never leaves this folder)
    broker/                   passwd, acl, ca.crt, server.crt, server.key, camnode.conf
    users/<name>/             password (0600), ca.crt — a station's or technician's login
    <node id>/                a node's files (provisioning.node)
    inventory.csv             one line per provisioned node (id, name, broker, public key, time)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioning import pki
from provisioning.broker import (
    BrokerLayout,
    broker_conf,
    hash_password,
    new_password,
    read_passwd,
    write_passwd,
)
from provisioning.errors import Conflict, ProvisionError
from provisioning.roles import NODE, ROLES, acl_text, check_name, check_prefix

FORMAT = "camnode-ward-1"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Ward:
    """Open with :func:`open_ward` (holds the folder's lock while in use)."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        self.root = root
        self.data = data

    # -- reading -------------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self.data["prefix"]

    @property
    def broker(self) -> BrokerAddress:
        return BrokerAddress(self.data["broker"]["host"], int(self.data["broker"]["port"]))

    @property
    def tls(self) -> bool:
        return bool(self.data["tls"])

    @property
    def client_certs(self) -> bool:
        return bool(self.data.get("client_certs"))

    @property
    def relay(self) -> str:
        """The station relay's RTSP address live-view nodes push to ("" until a node is
        provisioned with ``--relay``)."""
        return str(self.data.get("relay") or "")

    def check_relay(self, relay: str) -> None:
        """Like the broker: one relay per ward, a different one is refused (nothing changed)."""
        if self.relay and relay != self.relay:
            raise Conflict(f"this ward's live relay is {self.relay}, not {relay}; nothing changed")

    def live(self, name: str) -> bool:
        """Whether node ``name`` was provisioned with live view."""
        u = self.user(name)
        return bool(u and u.get("live"))

    def set_live(self, name: str, relay: str) -> None:
        """Remember the ward's relay and that node ``name`` pushes to it (``relay`` "": that it
        no longer does); saved at once."""
        if relay:
            self.check_relay(relay)
            self.data["relay"] = relay
            self.users[name]["live"] = True
        else:
            self.users[name].pop("live", None)
        self.save()

    @property
    def users(self) -> dict[str, dict[str, Any]]:
        return self.data["users"]

    def user(self, name: str) -> dict[str, Any] | None:
        return self.users.get(name)

    def active(self, role: str | None = None) -> list[str]:
        return sorted(n for n, u in self.users.items()
                      if u["state"] == "active" and (role is None or u["role"] == role))

    @property
    def ca_file(self) -> Path:
        return self.root / "pki" / "ca.crt"

    def layout(self) -> BrokerLayout:
        return BrokerLayout(port=self.broker.port, tls=self.tls, client_certs=self.client_certs)

    # -- changing ------------------------------------------------------------------------------
    def add(self, name: str, role: str, prefix: str | None = None) -> tuple[str | None, bool]:
        """Register ``name`` in ``role``: returns (new password or None, created). An existing
        active user of the same role and prefix is left as it is (password None, False)."""
        check_name(role, name)
        prefix = check_prefix(prefix or self.prefix)
        old = self.user(name)
        if old is not None:
            if old["state"] == "retired":
                raise Conflict(f"{name!r} was retired on {old['retired']}: a retired name is never "
                               "reused (its footage stays attributable); choose another")
            if old["role"] != role:
                raise Conflict(f"{name!r} is already a {old['role']} of this ward")
            if role == NODE and old["prefix"] != prefix:
                raise Conflict(f"node {name!r} is already provisioned on prefix {old['prefix']!r}, "
                               f"not {prefix!r}; nothing changed")
            return None, False
        password = new_password()
        lines = read_passwd(self.passwd)
        lines[name] = hash_password(name, password)
        self.users[name] = {"role": role, "prefix": prefix, "state": "active", "added": _now(),
                            "retired": None}
        write_passwd(self.passwd, lines)
        self._derive()
        return password, True

    def rotate(self, name: str, password: str | None = None) -> str:
        """Give ``name`` a new broker password (``password``, or a new one): returns it."""
        u = self.user(name)
        if u is None or u["state"] != "active":
            raise Conflict(f"{name!r} is not an active user of this ward")
        password = password or new_password()
        lines = read_passwd(self.passwd)
        lines[name] = hash_password(name, password)
        write_passwd(self.passwd, lines)
        return password

    def retire(self, name: str) -> None:
        u = self.user(name)
        if u is None:
            raise Conflict(f"{name!r} is not a user of this ward")
        if u["state"] == "retired":
            return
        u["state"], u["retired"] = "retired", _now()
        lines = read_passwd(self.passwd)
        lines.pop(name, None)
        write_passwd(self.passwd, lines)
        self._derive()

    @property
    def passwd(self) -> Path:
        return self.root / "broker" / "passwd"

    def _derive(self) -> None:
        """Rewrite the ACL and the broker config from the registry, then save the registry."""
        users = [(n, u["role"], u["prefix"]) for n, u in self.users.items() if u["state"] == "active"]
        prefixes = {self.prefix} | {p for _, r, p in users if r == NODE}
        broker = self.root / "broker"
        broker.mkdir(parents=True, exist_ok=True)
        (broker / "acl").write_text(acl_text(users, prefixes))
        (broker / "camnode.conf").write_text(broker_conf(self.layout()))
        self.save()

    def save(self) -> None:
        tmp = self.root / ".ward.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.root / "ward.json")


def create(root: Path, broker: BrokerAddress, *, prefix: str = "camnode", tls: bool = True,
           client_certs: bool = False) -> Ward:
    """A new ward: registry, and with TLS the site CA and the broker's certificate."""
    check_prefix(prefix)
    if (root / "ward.json").exists():
        raise Conflict(f"{root} is already a ward")
    if (root / "broker" / "passwd").exists():
        raise Conflict(f"{root} holds broker files from an older camnode-provision (no ward.json): "
                       "provision into a new folder")
    root.mkdir(parents=True, exist_ok=True)
    w = Ward(root, {"format": FORMAT, "prefix": prefix, "broker": {"host": broker.host, "port": broker.port},
                    "tls": tls, "client_certs": client_certs and tls, "created": _now(), "users": {}})
    if tls:
        ward_name = root.resolve().name
        pki.create_ca(root / "pki", ward_name)
        cert, key = pki.issue(root / "pki", broker.host, ward_name,
                              server_hosts=sorted({broker.host, "localhost", "127.0.0.1"}))
        b = root / "broker"
        b.mkdir(parents=True, exist_ok=True)
        (b / "server.crt").write_bytes(cert)
        pki.write_private(b / "server.key", key)
        (b / "ca.crt").write_bytes(w.ca_file.read_bytes())
    write_passwd(w.passwd, {})
    w._derive()
    return w


@contextlib.contextmanager
def open_ward(root: Path, *, broker: BrokerAddress | None = None, prefix: str | None = None,
              tls: bool = True, client_certs: bool = False) -> Iterator[Ward]:
    """The ward at ``root``, locked for the duration; created when ``broker`` is given and
    there is none. A ``broker`` or ``prefix`` that disagrees with an existing ward is refused."""
    if broker is None and not (root / "ward.json").exists():  # make nothing for a request that fails
        raise ProvisionError(f"{root} is not a ward yet: give --broker HOST[:PORT] the first time")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reg = root / "ward.json"
        if not reg.exists():
            if broker is None:
                raise ProvisionError(f"{root} is not a ward yet: give --broker HOST[:PORT] the first time")
            yield create(root, broker, prefix=prefix or "camnode", tls=tls, client_certs=client_certs)
            return
        try:
            data = json.loads(reg.read_text())
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"{reg}: unreadable ({exc})") from None
        if data.get("format") != FORMAT or set(data) < {"prefix", "broker", "tls", "users"}:
            raise ProvisionError(f"{reg}: not a camnode ward file")
        w = Ward(root, data)
        if client_certs and not w.client_certs:
            raise Conflict(f"{root} was made without client certificates; --client-certs applies to "
                           "a new ward")
        if broker is not None and (broker.host != w.broker.host or broker.port != w.broker.port):
            raise Conflict(f"this ward's broker is {w.broker}, not {broker}"
                           + (" (its TLS certificate names that address)" if w.tls else ""))
        if any(u["role"] not in ROLES for u in w.users.values()):
            raise ProvisionError(f"{reg}: unknown role in the registry")
        yield w
