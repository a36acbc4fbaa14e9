"""``camnode verify``: check the store (files + seals + index + chain) or an exported clip.

Store check, in recording order (sequence numbers), for every index row and every file:

* a file whose bytes no longer match its seal's SHA-256 → **altered**;
* a file that carries another segment's seal (names swapped) → **swapped**;
* an indexed segment whose file is gone without a deletion record → **removed**;
* a seal whose ``prev`` is not the chain value of the entry before it → **chain broken**
  (something was inserted or removed there; gaps recorded by retention are expected);
* a file the index does not know → **inserted**; a bad signature → **forged**.

The first problem is what the command names; all are listed. Reads every byte of every
segment (SHA-256 at ~500 MB/s here): minutes for a full card, run it offline.
Thread: the CLI's; opens its own read-only view of the index.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.record import mp4box
from node.record.export import manifest_digest
from node.record.index import COLUMNS
from node.record.integrity import chain_hash, check_signature, file_sha256
from node.record.segment import PART, parse_name, segment_files
from node.record.store import INDEX_NAME


@dataclass
class Verdict:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: True when signatures were checked against a key the verifier trusts (node.record.trust)
    authenticated: bool = False
    #: why there was nothing to check (no readable manifest or clip): not a verdict on footage
    unreadable: str | None = None

    @property
    def ok(self) -> bool:
        """Nothing wrong was found (integrity; authenticity only when :attr:`authenticated`)."""
        return not self.problems

    @property
    def first(self) -> str | None:
        return self.problems[0] if self.problems else None


def _index_rows(root: Path) -> tuple[dict[int, dict[str, Any]], str | None]:
    path = root / INDEX_NAME
    if not path.exists():
        return {}, "no index (rebuilt on the next start); checking the files alone"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = {r[0]: dict(zip(COLUMNS, r, strict=True))
                    for r in db.execute(f"SELECT {', '.join(COLUMNS)} FROM segments")}
        finally:
            db.close()
        return rows, None
    except sqlite3.DatabaseError as exc:
        return {}, f"index unreadable ({exc}); checking the files alone"


def verify_store(root: Path, public_hex: str | None = None, *, hash_files: bool = True) -> Verdict:
    """Check the store under ``root``; see the module doc."""
    v = Verdict()
    rows, note = _index_rows(root)
    files: dict[int, Path] = {}
    for p in segment_files(root):
        parsed = parse_name(p.name)
        if parsed is None:
            continue
        if p.name.endswith(PART):  # the segment being written (or a crash's, recovered at start)
            v.notes.append(f"in progress: {p.name} (not sealed yet, not checked)")
            continue
        files[parsed[1]] = p
    prev: str | None = None
    for seq in sorted(rows.keys() | files.keys()):
        row, path = rows.get(seq), files.get(seq)
        if path is None:
            assert row is not None
            if row["deleted_us"] is None:
                v.problems.append(f"removed: {row['name']} (seq {seq}) is gone without a deletion record")
            prev = row["chain"]
            continue
        v.checked += 1
        seal_read = mp4box.read_seal(path)
        if seal_read is None:
            v.problems.append(f"altered: {path.name} has no valid seal")
            prev = row["chain"] if row else None
            continue
        seal, media = seal_read
        if seal.get("name") != path.name or seal.get("seq") != seq:
            v.problems.append(f"swapped: {path.name} carries the seal of {seal.get('name')}")
            prev = row["chain"] if row else seal.get("chain")
            continue
        if seal.get("media_bytes") != media or (
                hash_files and file_sha256(path, media) != seal.get("sha256")):
            v.problems.append(f"altered: {path.name} (content does not match its SHA-256)")
        elif chain_hash(seal) != seal.get("chain"):
            v.problems.append(f"altered: {path.name} (seal fields do not match its chain value)")
        elif prev is not None and seal.get("prev") != prev:
            v.problems.append(f"chain broken at {path.name}: a segment before it was removed or inserted")
        elif row is None:
            if rows:
                v.problems.append(f"inserted: {path.name} is not in the index")
        elif row["sha256"] != seal["sha256"] or row["chain"] != seal["chain"]:
            v.problems.append(f"altered: {path.name} disagrees with its index row")
        elif row["deleted_us"] is not None:
            v.problems.append(f"inserted: {path.name} was deleted by retention and is back")
        if public_hex and not check_signature(public_hex, seal.get("chain", ""), seal.get("sig")):
            v.problems.append(f"forged: {path.name} signature does not verify")
        prev = seal.get("chain")
    if note:
        v.notes.append(note)
    if not rows and not files:
        v.problems.append(f"no footage found in {root}")
    return v


class ManifestUnreadable(ValueError):
    """The manifest cannot be read or parsed: not a verdict on the clip (exit 2)."""


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestUnreadable(f"no manifest at {path} (the manifest of CLIP is CLIP.json, e.g. "
                                 "clip.mp4.json; give --manifest)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestUnreadable(f"manifest {path} unreadable: {getattr(exc, 'strerror', None) or exc}") \
            from None
    if not isinstance(m, dict) or not isinstance(m.get("segments"), list):
        raise ManifestUnreadable(f"{path} is not a camnode clip manifest")
    return m


def verify_clip(clip: Path, manifest: Path | dict[str, Any], public_hex: str | None = None) -> Verdict:
    """Check an export against its manifest: clip hash, chain entries and links, and — only
    with ``public_hex``, a key the verifier trusts (node.record.trust: never the key the
    manifest carries) — every signature. Nothing to check against (no readable manifest or
    clip) is not a verdict on the footage: :attr:`Verdict.unreadable` says so (the CLI exits 2)."""
    v = Verdict(authenticated=public_hex is not None)
    try:
        m = manifest if isinstance(manifest, dict) else read_manifest(manifest)
        digest = file_sha256(clip)
    except (ManifestUnreadable, OSError) as exc:
        v.unreadable = str(exc) if isinstance(exc, ManifestUnreadable) else f"{clip}: {exc.strerror or exc}"
        v.problems.append(f"unreadable: {v.unreadable}")
        v.authenticated = False
        return v
    key = public_hex
    if digest != m.get("sha256"):
        v.problems.append(f"altered: {clip.name} does not match the manifest's SHA-256")
    if key and m.get("public_key") and str(m["public_key"]).lower() != key.lower():
        who = m.get("node_id") or "the node"
        v.problems.append(f"forged: signed with another key than the trusted key of {who}")
    prev_entry: dict[str, Any] | None = None
    for e in m.get("segments", []):
        v.checked += 1
        if not isinstance(e, dict):
            v.problems.append("altered: a manifest entry is not an object")
            continue
        try:
            chain_ok = chain_hash(e) == e.get("chain")
        except (KeyError, TypeError, ValueError):
            chain_ok = False
        if not chain_ok:
            v.problems.append(f"altered: manifest entry {e.get('name')} does not match its chain value")
        elif prev_entry is not None and e.get("seq") == prev_entry.get("seq", 0) + 1 \
                and e.get("prev") != prev_entry.get("chain"):
            v.problems.append(f"chain broken at {e.get('name')}")
        if key and not check_signature(key, str(e.get("chain", "")), e.get("sig")):
            v.problems.append(f"forged: signature of {e.get('name')} does not verify with the trusted key")
        prev_entry = e
    if key and m.get("signature") and not check_signature(key, manifest_digest(m).hex(), m["signature"]):
        v.problems.append("forged: the manifest's signature does not verify")
    if key and not m.get("signature"):
        v.problems.append("unsigned: the manifest carries no signature")
    return v
