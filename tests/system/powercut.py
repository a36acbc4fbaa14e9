"""What a power-cut campaign reads and checks besides the segments (``tests/record_crash.py``):

* the store as the next boot finds it, read offline from the card (:func:`rdump`);
* the node's side databases (outbox, open events) pass SQLite's integrity check;
* the card's writes while recording (``/sys/block/vda/stat`` in the guest): what a flush policy
  costs the SD card, per minute and per hour;
* the real station archive (``camnode-station serve`` on the host, TLS to the ward's broker,
  the ``station-archive`` login) and, at the end, every event the node recorded on its card
  archived exactly once with a start and an end.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from node.record.segment import to_us
from tests.stationproc import ServeProcess, events_cli
from tests.system.nodevm import ARCHIVE_USER, NODE_ID
from tests.system.vmimage import BOOT_MB, BOOT_START, SECTOR

STORE = "/var/lib/camnode/recordings"
GUEST_PY = "/opt/camnode/.venv/bin/python"
#: write requests, sectors written, flushes, bytes of segment files
Sample = tuple[int, int, int, int]


def rdump(card: Path, dest: Path) -> Path:
    """The store as the next boot will find it, read without mounting: the root partition copied
    out of the card, its journal replayed (what the kernel does when it mounts it; debugfs alone
    would show the metadata as it was before the journal's last commits), then ``debugfs rdump``.
    The card itself is left as the cut left it, for the guest's own recovery."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    part = dest / "root.ext4"
    start = (BOOT_START + BOOT_MB * 2048) * SECTOR
    subprocess.run(["dd", f"if={card}", f"of={part}", "bs=4M", f"skip={start}", "iflag=skip_bytes",
                    "conv=sparse", "status=none"], check=True)
    r = subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(part)], capture_output=True, text=True)
    assert r.returncode in (0, 1), f"e2fsck: {r.returncode} {r.stdout} {r.stderr}"
    r = subprocess.run(["debugfs", "-R", f"rdump {STORE} {dest}", str(part)], capture_output=True, text=True)
    assert r.returncode == 0 and (dest / "recordings").is_dir(), r.stderr
    part.unlink()
    return dest / "recordings"


def side_databases(store: Path) -> list[str]:
    """The node's databases must pass SQLite's integrity check after the cut: the segment index
    (left in place for the segment check) and the outbox and open-events databases beside it
    (then set aside with the live view's usage counter)."""
    problems = []
    for name in ("index.db", "outbox.sqlite", "events-open.sqlite"):
        db = store / name
        if db.exists():
            with sqlite3.connect(db) as con:
                verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                problems.append(f"{name}: {verdict}")
        if name == "index.db":
            continue
        for f in store.glob(name + "*"):
            f.unlink()
    for f in store.glob("live-usage.*"):  # the live view's data counter (unreadable: counts from 0)
        f.unlink()
    return problems


# ------------------------------------------------------------------------------ SD card writes


@dataclass
class DiskWrites:
    """Block-layer writes to the card (``/sys/block/vda/stat``) over the recording windows."""

    seconds: float = 0.0
    requests: int = 0
    sectors: int = 0
    flushes: int = 0
    video_bytes: int = 0  # what the segment files grew by in those windows

    @staticmethod
    def sample(node) -> Sample:
        """(write requests, sectors written, flushes, bytes of segment files) now."""
        code, out = node.vm.sh("cat /sys/block/vda/stat; find " + STORE + " -name '*.mp4*' "
                               "-printf '%s\\n' | awk '{s+=$1} END {print s+0}'", 30)
        assert code == 0, out
        stat, files = out.split("\n")[-2:]
        f = [int(x) for x in stat.split()]
        return f[4], f[6], (f[15] if len(f) > 15 else 0), int(files)

    def add(self, before: Sample, after: Sample, seconds: float) -> None:
        self.seconds += seconds
        self.requests += after[0] - before[0]
        self.sectors += after[1] - before[1]
        self.flushes += after[2] - before[2]
        self.video_bytes += after[3] - before[3]

    def summary(self) -> str:
        if self.seconds <= 0:
            return "no recording window measured"
        per_min = 60.0 / self.seconds
        mb = self.sectors * 512 / 1e6
        amp = (self.sectors * 512 / self.video_bytes) if self.video_bytes else float("nan")
        return (f"card writes while recording ({self.seconds:.0f} s): {self.requests * per_min:.0f} write "
                f"requests/min ({self.requests * per_min * 60:.0f}/h), {self.flushes * per_min:.1f} "
                f"flushes/min, {mb * per_min:.2f} MB/min ({mb * per_min * 60:.0f} MB/h); video "
                f"{self.video_bytes / 1e6 * per_min:.2f} MB/min: written/video {amp:.2f}, "
                f"{self.sectors * 512 / max(1, self.requests) / 1024:.1f} KiB per request")


def top_writers(node, n: int = 6) -> str:
    """Which processes wrote to the card since this boot (``/proc/<pid>/io`` ``write_bytes``:
    the bytes each one sent to the block layer, page cache writeback included; the ext4
    journal's own writes are jbd2's), the largest first."""
    code, out = node.vm.sh("for d in /proc/[0-9]*; do w=$(sed -n 's/^write_bytes: //p' $d/io 2>/dev/null); "
                           "[ -n \"$w\" ] && [ \"$w\" -gt 0 ] && echo \"$w $(cat $d/comm)\"; done "
                           "| sort -rn | head -n " + str(n) + "; cut -d' ' -f1 /proc/uptime", 60)
    assert code == 0, out
    *rows, uptime = out.splitlines()
    return f"since boot ({float(uptime):.0f} s), bytes written by: " + ", ".join(
        f"{r.split(maxsplit=1)[1]} {int(r.split()[0]) / 1e6:.1f} MB" for r in rows)


# ------------------------------------------------------------------------------ the archive


@dataclass
class Archive:
    """The real ``camnode-station serve`` on the host with a SQLite archive: the station login
    ``station-archive`` over TLS to the ward's broker (client id = user name)."""

    ward: Path
    port: int
    work: Path
    serve: ServeProcess | None = None

    @property
    def url(self) -> str:
        return f"sqlite:///{self.work / 'archive.sqlite'}"

    def start(self) -> Archive:
        self.work.mkdir(parents=True, exist_ok=True)
        users = self.ward / "users" / ARCHIVE_USER
        self.serve = ServeProcess(self.port, self.url, self.work / "serve.log",
                                  "--username", ARCHIVE_USER, "--password-file", str(users / "password"),
                                  "--tls-ca", str(self.ward / "pki" / "ca.crt"), client_id=ARCHIVE_USER)
        assert self.serve.wait_log("subscribed (QoS 1)", 60), self.serve.log()[-3000:]
        return self

    def events(self) -> list[dict]:
        return events_cli(self.url, "--node", NODE_ID)

    def stop(self) -> dict:
        """Stop the service; what it said it did (:meth:`ServeProcess.final_stats`)."""
        assert self.serve is not None
        assert self.serve.stop() == 0, self.serve.log()[-3000:]
        return self.serve.final_stats()


def card_events(node) -> dict:
    """What the node recorded on its card, read in the guest with the node's own Python (the
    node stopped): its index's events, what its outbox and open-events databases still hold."""
    script = ("import json,sqlite3;d='" + STORE + "';"
              "q=lambda f,s:sqlite3.connect('file:'+d+'/'+f+'?mode=ro',uri=True).execute(s).fetchall();"
              "print(json.dumps({'events':q('index.db','select event_id,start_us,end_us from events'),"
              "'outbox':q('outbox.sqlite','select count(*) from outbox')[0][0],"
              "'open':[r[0] for r in q('events-open.sqlite','select id from open_events')]}))")
    code, out = node.vm.sh(f"{GUEST_PY} -c \"{script}\"", 60)
    assert code == 0, out
    return json.loads(out.splitlines()[-1])


@dataclass
class ExactlyOnce:
    """The archive against the card: one row per event the node recorded, with a start and an end."""

    recorded: int = 0
    archived: int = 0
    lost: list[str] = field(default_factory=list)  # on the card, not in the archive
    unended: list[str] = field(default_factory=list)  # archived without an end
    unknown: list[str] = field(default_factory=list)  # archived, not on the card
    wrong_end: list[str] = field(default_factory=list)  # archive's end differs from the card's
    end_reasons: Counter = field(default_factory=Counter)
    merged: int = 0  # event messages merged into the archive's rows (each phase once)
    #: from the service: messages it had archived already (sent again because the cut came
    #: before its acknowledgement reached the node: merged once, acknowledged again), and those
    #: it refused (none may be)
    redelivered: int = 0
    refused: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unended or self.unknown or self.wrong_end or self.refused)

    def served(self, stats: dict) -> ExactlyOnce:
        self.redelivered, self.refused = stats["duplicates"], stats["refused"]
        return self

    def summary(self) -> str:
        return (f"events: {self.recorded} on the card, {self.archived} archived, each once with its "
                f"start and end ({self.merged} messages merged, {self.redelivered} redeliveries recognised "
                f"and merged once, refused {self.refused or 0}); end reasons {dict(self.end_reasons)}; "
                f"lost {len(self.lost)}, without end {len(self.unended)}, unknown to the card "
                f"{len(self.unknown)}, end differs {len(self.wrong_end)}")


def archive_rows(url: str) -> dict[str, dict]:
    """The archive's bookkeeping per event id (``phases`` seen, deliveries counted, the last
    payload: its ``end_reason``), read from its database as the delivery tests do."""
    from sqlalchemy import select

    from station.archive import open_archive
    from station.archive.schema import events

    engine = open_archive(url, migrate=False)
    try:
        with engine.connect() as conn:
            return {r.id: {"phases": r.phases, "messages": r.messages, "payload": r.payload}
                    for r in conn.execute(select(events.c.id, events.c.phases, events.c.messages,
                                                 events.c.payload).where(events.c.node == NODE_ID))}
    finally:
        engine.dispose()


def compare(card: list[list], rows: list[dict], books: dict[str, dict]) -> ExactlyOnce:
    """``card``: (event_id, start_us, end_us) from the node's index; ``rows``: the archive's
    events of this node (``camnode-station events --json``) that started before the node was
    stopped; ``books``: :func:`archive_rows`."""
    from station.archive.ingest import PHASE_BIT

    r = ExactlyOnce(recorded=len(card), archived=len(rows))  # (one row per id: its primary key)
    by_id = {x["id"]: x for x in rows}
    on_card = {e[0]: e for e in card}
    r.lost = sorted(set(on_card) - set(by_id))
    r.unknown = sorted(set(by_id) - set(on_card))
    for x in rows:
        book = books.get(x["id"], {})
        r.merged += int(book.get("messages") or 0)
        if not x.get("end") or x.get("phase") != "end" or not int(book.get("phases") or 0) & PHASE_BIT["end"]:
            r.unended.append(x["id"])
            continue
        r.end_reasons[(book.get("payload") or {}).get("end_reason", "?")] += 1
        mine = on_card.get(x["id"])
        if mine is not None and mine[2] is not None:
            end = datetime.fromisoformat(x["end"].replace("Z", "+00:00"))
            end_us = to_us(end if end.tzinfo else end.replace(tzinfo=UTC))
            if abs(end_us - mine[2]) > 10_000:
                r.wrong_end.append(f"{x['id']}: archive {x['end']}, card {mine[2]}")
    return r
