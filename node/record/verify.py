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

    @property
    def ok(self) -> bool:
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


def verify_clip(clip: Path, manifest_path: Path, public_hex: str | None = None) -> Verdict:
    """Check an export against its manifest: clip hash, chain entries, links and signatures."""
    v = Verdict()
    try:
        m = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        v.problems.append(f"manifest unreadable: {exc}")
        return v
    key = public_hex or m.get("public_key")
    if file_sha256(clip) != m.get("sha256"):
        v.problems.append(f"altered: {clip.name} does not match the manifest's SHA-256")
    prev_entry: dict[str, Any] | None = None
    for e in m.get("segments", []):
        v.checked += 1
        if chain_hash(e) != e.get("chain"):
            v.problems.append(f"altered: manifest entry {e.get('name')} does not match its chain value")
        elif prev_entry is not None and e.get("seq") == prev_entry.get("seq", 0) + 1 \
                and e.get("prev") != prev_entry.get("chain"):
            v.problems.append(f"chain broken at {e.get('name')}")
        if key and not check_signature(key, e.get("chain", ""), e.get("sig")):
            v.problems.append(f"forged: signature of {e.get('name')} does not verify")
        prev_entry = e
    if key and m.get("signature") and not check_signature(key, manifest_digest(m).hex(), m["signature"]):
        v.problems.append("forged: the manifest's signature does not verify")
    if public_hex and not m.get("signature"):
        v.problems.append("unsigned: the manifest carries no signature")
    return v
