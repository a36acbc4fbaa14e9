"""The poles the station knows: imported from provisioning's ``inventory.csv``, edited by hand.

``inventory.csv`` (written by ``camnode-provision node``) has ``node_id, name, broker,
signing_public_key, provisioned_utc``; the ward adds the columns it knows — ``site``, ``pole``,
``address``, ``lat``, ``lon``, ``facing_deg`` (compass bearing the camera looks along) and
``neighbours`` (ids separated by spaces or ``;``) — in the same file or later with
``camnode-station inventory set``. A later line for the same node wins (re-provisioning
issues a new key); columns a line leaves empty keep what the station has.

The public key recorded here is the one evidence is verified against (never a key carried in
a clip's manifest).
"""

from __future__ import annotations

import csv
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from station.archive.db import writing
from station.archive.schema import nodes

EDITABLE = ("site", "pole", "address", "lat", "lon", "facing_deg", "neighbours", "pubkey")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


log = logging.getLogger(__name__)

class InventoryError(ValueError):
    """A line or value the inventory cannot take; says which and why."""


def parse_fields(raw: dict[str, str], where: str) -> dict[str, Any]:
    """Text values (CSV cells, command-line options) → column values; empty cells are skipped."""
    out: dict[str, Any] = {}
    for key in ("site", "pole", "address"):
        if raw.get(key):
            out[key] = raw[key].strip()
    for key, lo, hi in (("lat", -90, 90), ("lon", -180, 180), ("facing_deg", 0, 360)):
        if raw.get(key) not in (None, ""):
            try:
                v = float(raw[key])
            except ValueError:
                raise InventoryError(f"{where}: {key} must be a number, got {raw[key]!r}") from None
            if not lo <= v <= hi:
                raise InventoryError(f"{where}: {key} must be within {lo}..{hi}, got {v}")
            out[key] = v % 360 if key == "facing_deg" else v
    if raw.get("neighbours") not in (None, ""):
        ids = [x for x in re.split(r"[;\s,]+", raw["neighbours"].strip()) if x]
        bad = [x for x in ids if not _ID.match(x)]
        if bad:
            raise InventoryError(f"{where}: neighbours: not node ids: {', '.join(bad)}")
        out["neighbours"] = ids
    key = raw.get("signing_public_key") or raw.get("pubkey")
    if key:
        key = key.strip()
        if not re.fullmatch(r"[0-9a-fA-F]{64}", key) and "BEGIN PUBLIC KEY" not in key:
            raise InventoryError(f"{where}: public key must be 64 hex digits (Ed25519) or PEM")
        out["pubkey"] = _raw_hex(key, where)
    return out


def _raw_hex(key: str, where: str) -> str:
    """One spelling per key (lower-case hex of the raw Ed25519 key), so that the same key
    written in capitals or as PEM is the same key."""
    if "BEGIN PUBLIC KEY" not in key:
        return key.lower()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        pub = serialization.load_pem_public_key(key.encode())
    except ValueError:
        raise InventoryError(f"{where}: the PEM public key does not parse") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise InventoryError(f"{where}: the public key is not Ed25519 (what nodes sign with)")
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _rekeyed(node_id: str, old: Any, fields: dict[str, Any], replace_key: bool) -> None:
    """A node's signing key is what its footage is verified against: an edited file must not
    change it quietly. Raises unless the replacement was asked for; logs it when it was."""
    if old is None or not old["pubkey"] or "pubkey" not in fields or fields["pubkey"] == old["pubkey"]:
        return
    if not replace_key:
        raise InventoryError(f"{node_id}: its signing key differs from the one the archive trusts "
                             f"({old['pubkey'][:8]}... here, {fields['pubkey'][:8]}... given): footage is "
                             f"verified only against keys already trusted; if the pole was re-keyed, give "
                             f"--replace-key {node_id}")
    log.warning("inventory: %s's signing key replaced (%s... -> %s...), as asked", node_id,
                old["pubkey"][:8], fields["pubkey"][:8])


def upsert(engine: Engine, node_id: str, fields: dict[str, Any], now: datetime, *,
           replace_key: bool = False) -> str:
    """Create or update one node; returns ``added``, ``updated`` or ``unchanged``. A different
    signing key for a node that has one is refused unless ``replace_key``."""
    if not _ID.match(node_id):
        raise InventoryError(f"not a node id: {node_id!r}")
    with writing(engine) as conn:
        old = conn.execute(select(nodes).where(nodes.c.id == node_id)).mappings().first()
        _rekeyed(node_id, old, fields, replace_key)
        if old is None:
            blank = {"site": "", "pole": "", "address": "", "neighbours": [], "pubkey": ""}
            conn.execute(insert(nodes).values(**{**blank, **fields, "id": node_id, "updated": now}))
            return "added"
        changes = {k: v for k, v in fields.items() if old[k] != v}
        if not changes:
            return "unchanged"
        conn.execute(update(nodes).where(nodes.c.id == node_id).values(**changes, updated=now))
        return "updated"


def import_csv(engine: Engine, path: str | Path, now: datetime, *,
               replace_keys: frozenset[str] = frozenset()) -> dict[str, int]:
    """Import provisioning's inventory (plus the ward's columns). Validates every line first:
    a bad line changes nothing and names its line number; so does a signing key that differs
    from the one the archive trusts, unless its node is in ``replace_keys``."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "node_id" not in reader.fieldnames:
                raise InventoryError(f"{path}: no node_id column (is this provisioning's inventory.csv?)")
            parsed = [(line.get("node_id", "").strip(), parse_fields(line, f"{path}:{n}"), n)
                      for n, line in enumerate(reader, start=2)]
    except OSError as exc:
        raise InventoryError(f"{path}: {exc.strerror or exc}") from None
    seen: dict[str, int] = {}
    for node_id, _, n in parsed:
        if not _ID.match(node_id):
            raise InventoryError(f"{path}:{n}: not a node id: {node_id!r}")
        if node_id in seen:
            raise InventoryError(f"{path}:{n}: {node_id} is on line {seen[node_id]} too (one line per pole)")
        seen[node_id] = n
    with engine.connect() as conn:  # a key change not asked for: refused before anything is written
        trusted = {r.id: r._mapping for r in conn.execute(select(nodes.c.id, nodes.c.pubkey))}
    for node_id, fields, n in parsed:
        if node_id not in replace_keys:
            try:
                _rekeyed(node_id, trusted.get(node_id), fields, replace_key=False)
            except InventoryError as exc:
                raise InventoryError(f"{path}:{n}: {exc}") from None
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    for node_id, fields, _ in parsed:
        counts[upsert(engine, node_id, fields, now, replace_key=node_id in replace_keys)] += 1
    return counts


def list_nodes(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(nodes).order_by(nodes.c.id))]


def get_node(engine: Engine, node_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(nodes).where(nodes.c.id == node_id)).mappings().first()
    return None if row is None else dict(row)
