"""Which public key a verifier trusts for a node — never the one a manifest carries.

A manifest holds the signer's public key, but whoever alters a clip can re-sign its manifest
with a key of their own and put that key in it: the key inside proves nothing. Authenticity
needs a key the verifier already holds from a trusted channel:

* ``--pubkey``: 64 hex digits, or the node's ``signing.pub`` file from provisioning;
* ``--inventory``: the ward's ``inventory.csv`` (provisioning's record of every node's key),
  looked up by the node id the manifest names;
* on the node itself, its own signing key (``--config``).

Without one, a check proves integrity only (the clip matches its manifest and the chain is
whole), not who made it: :data:`UNKNOWN`.

Thread: any (pure functions over small files).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")

#: What ``camnode verify`` says when it has no trusted key.
UNKNOWN = "integrity only, authenticity unknown"


class TrustError(ValueError):
    """A key argument is unusable (a usage error, exit 2 — never a verdict on the footage)."""


def read_pubkey(value: str) -> str:
    """``--pubkey``: hex digits, or a file holding them (``signing.pub``)."""
    text = value.strip()
    if _HEX.match(text):
        return text.lower()
    path = Path(value)
    if not path.exists():
        raise TrustError(f"--pubkey {value}: no such file, and not 64 hex digits (a node's public key)")
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrustError(f"--pubkey {value}: unreadable ({getattr(exc, 'strerror', None) or exc})") from None
    if not _HEX.match(text):
        raise TrustError(f"--pubkey {value}: not a public key file (expected 64 hex digits, as signing.pub)")
    return text.lower()


def inventory_key(inventory: Path, node_id: str) -> str | None:
    """The node's key in the ward's ``inventory.csv``; None when the node is not listed. The
    latest line counts (a node re-provisioned after a card swap keeps its key)."""
    try:
        with inventory.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TrustError(f"--inventory {inventory}: unreadable ({getattr(exc, 'strerror', None) or exc})") \
            from None
    if rows and "signing_public_key" not in rows[0]:
        raise TrustError(f"--inventory {inventory}: not a camnode inventory (no signing_public_key column)")
    keys = [r["signing_public_key"].strip() for r in rows if r.get("node_id") == node_id]
    if keys and not _HEX.match(keys[-1]):
        raise TrustError(f"--inventory {inventory}: the key of {node_id} is not 64 hex digits")
    return keys[-1].lower() if keys else None
