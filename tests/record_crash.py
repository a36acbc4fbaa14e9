"""The SIGKILL campaign shared by the crash test (20 kills) and ``bench_record.py --soak`` (200).

Each round: start :mod:`tests.record_crashee` on the store, let it record for a random
0.3-1.6 s (at 4x real time: 1.2-6.4 s of video), SIGKILL it, then restart the store's
recovery (:meth:`Store.open`, exactly what the recorder runs at start) and check:

* the index as the cut left it: not corrupt, no row whose file is gone, and at most one closed
  segment it did not know yet (the one closed just before the cut: its row commits after the
  rename) — what :meth:`Store.open` had to repair, before the comparison below;
* no ``.part`` and no file the index does not know (no orphans), no indexed file missing;
* every segment file decodes completely with PyAV (each new one once);
* ``verify`` finds the store intact: hashes, seals and the chain across every recovery;
* the video lost at the cut (fed to the recorder but not on disk after recovery) is at most
  one fragment (2 s) plus a frame.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.record.segment import PART, segment_files
from node.record.store import JOURNAL_NAME, Store
from node.record.verify import verify_store
from tests.record_media import decode_count

CRASHEE = Path(__file__).with_name("record_crashee.py")
ALLOWED_TOP = {"index.db", "index.db-wal", "index.db-shm", JOURNAL_NAME}


@dataclass
class Campaign:
    kills: int = 0
    segments: int = 0
    recovered: int = 0
    removed_parts: int = 0
    indexed_from_files: int = 0  # closed segments the index learnt from their seals at recovery
    losses_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_store(root: Path, decoded: set[str], camp: Campaign, fed_end_us: int | None) -> None:
    """Recover like a restart, then check the store (see the module doc)."""
    store = Store(root)
    rep = store.open()
    camp.recovered += rep["recovered"]
    camp.removed_parts += rep["removed_parts"]
    camp.indexed_from_files += rep["indexed_from_files"]
    if rep["index_corrupt"] or rep["missing"] or rep["indexed_from_files"] > 1:
        camp.problems.append(f"kill {camp.kills}: the index after the cut: corrupt {rep['index_corrupt']}, "
                             f"rows without a file {rep['missing']}, closed segments it did not know "
                             f"{rep['indexed_from_files']} (at most 1)")
    try:
        idx = store.index
        assert idx is not None
        live = idx.live_names()
        files = segment_files(root)
        names = {p.name for p in files}
        if any(p.name.endswith(PART) for p in files):
            camp.problems.append(f"kill {camp.kills}: .part file left after recovery")
        if names != set(live):
            camp.problems.append(f"kill {camp.kills}: index {sorted(set(live) ^ names)} differs from files")
        for entry in os.scandir(root):
            if entry.is_file() and entry.name not in ALLOWED_TOP:
                camp.problems.append(f"kill {camp.kills}: orphan {entry.name}")
            if entry.is_dir():
                for f in os.scandir(entry.path):
                    if f.name not in live:
                        camp.problems.append(f"kill {camp.kills}: orphan {entry.name}/{f.name}")
        rows = idx.rows(live_only=True)
        for r in rows:
            if r["name"] in decoded:
                continue
            try:
                n = decode_count(store.path_of(r["name"]))
            except Exception as exc:  # any decode error is a failure of the campaign
                camp.problems.append(f"kill {camp.kills}: {r['name']} does not decode: {exc}")
                continue
            if n != r["frames"]:
                camp.problems.append(f"kill {camp.kills}: {r['name']} decodes {n}/{r['frames']} frames")
            decoded.add(r["name"])
        camp.segments = len(rows)
        v = verify_store(root)  # the hash chain survives every crash and recovery
        if not v.ok:
            camp.problems.append(f"kill {camp.kills}: verify: {v.first}")
        if fed_end_us is not None and rows:
            lost = (fed_end_us - rows[-1]["end_us"]) / 1e6
            camp.losses_s.append(lost)
    finally:
        store.close()


def run_campaign(root: Path, clip: Path, kills: int, seed: int = 1, speed: float = 4.0,
                 segment_s: float = 3.0, python: str = sys.executable) -> Campaign:
    rng = random.Random(seed)
    camp = Campaign()
    decoded: set[str] = set()
    offset = 0.0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for _ in range(kills):
        proc = subprocess.Popen([python, str(CRASHEE), str(root), str(clip), str(offset), str(speed),
                                 str(segment_s)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            proc.wait()
            camp.problems.append(f"kill {camp.kills}: recorder did not start ({line!r})")
            break
        time.sleep(rng.uniform(0.3, 1.6))
        os.kill(proc.pid, signal.SIGKILL)
        camp.kills += 1
        fed: int | None = None
        for ln in proc.stdout:
            if ln.startswith("fed "):
                v = int(ln.split()[1])
                fed = v if fed is None else max(fed, v)
        proc.wait()
        check_store(root, decoded, camp, fed)
        if fed is not None:
            # the next run continues the timeline 1 s after what this one fed
            from node.record.segment import from_us
            from tests.record_media import T0

            offset = (from_us(fed) - T0).total_seconds() + 1.0
    return camp
