"""Evidence integrity: the hash chain over segments and its Ed25519 signatures.

Each closed segment gets one chain entry::

    chain = SHA-256( prev_chain (32 bytes) || canonical JSON of the entry's fields )

where the fields (:data:`CHAIN_FIELDS`) include the segment's sequence number, name, times
and the SHA-256 of its media bytes. Altering a byte changes the segment's hash; removing,
inserting or reordering segments breaks the ``prev`` links. When the node has a key
(``record.signing_key``: a raw 32-byte Ed25519 seed or a PKCS#8 PEM file), each ``chain``
value is signed, so a copy of the chain cannot be recomputed by whoever altered the footage;
anyone holding the node's *public* key can check an export without the secret.

Retention deletes old segments on purpose; each deletion is recorded (a tombstone in the
index and a line in the journal) with the deleted entry's chain value, so a verifier can tell
an expected gap from a removal.

Thread: any (pure functions; :class:`Signer` is immutable once loaded).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

GENESIS = "0" * 64

#: Fields of a seal that the chain covers (everything but the chain value and signature).
CHAIN_FIELDS = ("seq", "name", "start_us", "end_us", "frames", "keyframes", "synced",
                "clock_step_s", "recovered", "media_bytes", "sha256", "prev")


class KeyError_(ValueError):
    """The signing key file exists but cannot be used."""


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps({k: fields.get(k) for k in CHAIN_FIELDS}, sort_keys=True,
                      separators=(",", ":")).encode()


def chain_hash(fields: dict[str, Any]) -> str:
    """The chain value of an entry whose ``prev`` field is already set."""
    return hashlib.sha256(bytes.fromhex(fields["prev"]) + canonical(fields)).hexdigest()


def file_sha256(path: Path, length: int | None = None, bufsize: int = 1 << 20) -> str:
    """SHA-256 of the first ``length`` bytes of ``path`` (all of it when None)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        remaining = length
        while remaining is None or remaining > 0:
            n = bufsize if remaining is None else min(bufsize, remaining)
            block = fh.read(n)
            if not block:
                break
            h.update(block)
            if remaining is not None:
                remaining -= len(block)
    return h.hexdigest()


class Signer:
    """Signs chain values with the node's Ed25519 key; :meth:`none` when none is provisioned.

    Cost: ~50 µs per signature (one per segment).
    """

    def __init__(self, private: Any | None) -> None:
        self._key = private
        self.public_hex: str | None = None
        if private is not None:
            from cryptography.hazmat.primitives import serialization

            raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw)
            self.public_hex = raw.hex()

    @classmethod
    def none(cls) -> Signer:
        return cls(None)

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        """Load a raw 32-byte seed, a hex seed, or a PKCS#8 PEM Ed25519 private key."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        data = Path(path).read_bytes()
        try:
            if data.startswith(b"-----BEGIN"):
                key = serialization.load_pem_private_key(data, password=None)
                if not isinstance(key, Ed25519PrivateKey):
                    raise KeyError_(f"{path}: not an Ed25519 key")
                return cls(key)
            stripped = data.strip()
            if len(stripped) == 64:
                return cls(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(stripped.decode())))
            if len(data) == 32:
                return cls(Ed25519PrivateKey.from_private_bytes(data))
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeyError_(f"{path}: unusable key: {exc}") from None
        raise KeyError_(f"{path}: expected a 32-byte seed, 64 hex digits or a PEM Ed25519 key")

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def sign(self, chain_hex: str) -> str | None:
        if self._key is None:
            return None
        return self._key.sign(bytes.fromhex(chain_hex)).hex()


def check_signature(public_hex: str, chain_hex: str, sig_hex: str | None) -> bool:
    """True when ``sig_hex`` is the public key's signature of ``chain_hex``."""
    if not sig_hex:
        return False
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(sig_hex), bytes.fromhex(chain_hex))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def generate_key(path: Path) -> str:
    """Write a new raw Ed25519 seed to ``path`` (mode 0600); return the public key (hex).

    Provisioning's job on a real node; here for tests and ``camnode verify`` demos.
    """
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    return Signer(key).public_hex or ""
