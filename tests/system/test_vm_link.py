"""The node over a 4G-like link: 80 ms ± 30 ms, 2 % loss, 1 Mbit/s each way, and three outages
of 5 minutes in which packets vanish (no RST, no ICMP: what a cell that lost its carrier does).

The link is shaped inside the guest, whose kernel has netem (the host's has not): egress on the
guest's interface, ingress through an ifb device. A real ``camnode-station serve`` archives on
the host; after the run every event the node journalled must be in the archive once, in order;
heartbeats must be back within 30 s of each outage's end; a clip pulled over the shaped link
either completes and verifies or fails with a one-line reason (issue 15: the link may lose it;
it completed in every run so far), and one asked for during an outage fails with its reason,
never hangs.

Runs under ``make soak-system`` only (about 25 minutes). While developing:
``CAMNODE_VM_OUTAGE_S`` (default 300) and ``CAMNODE_VM_LINK_UP_S`` (shaped link up before and
between outages, default 120) shorten it. The figures are printed (``-s``).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from node.record.segment import from_us
from tests.stationproc import REPO, ServeProcess, events_cli, wait_until
from tests.system import nodeprobe as probe
from tests.system.nodevm import ARCHIVE_USER, NODE_ID, TOOL_USER
from tests.system.powercut import STORE

OUTAGE_S = float(os.environ.get("CAMNODE_VM_OUTAGE_S", "300"))
UP_S = float(os.environ.get("CAMNODE_VM_LINK_UP_S", "120"))
OUTAGES = 3
SHAPE = "delay 80ms 30ms distribution normal loss 2% rate 1mbit"
OUTAGE = "delay 80ms 30ms distribution normal loss 100% rate 1mbit"
RESUME_S = 30.0
CLIP_S = 60


class Link:
    """The guest's uplink to the ward's broker, shaped both ways."""

    def __init__(self, node) -> None:
        self.node = node
        route = probe.sh(node, "ip -o route get 10.0.2.2")
        self.dev = re.search(r" dev (\S+)", route).group(1)
        probe.sh(node, "modprobe ifb numifbs=1 && ip link set ifb0 up"
                 f" && tc qdisc add dev {self.dev} root netem {SHAPE}"
                 f" && tc qdisc add dev {self.dev} handle ffff: ingress"
                 f" && tc filter add dev {self.dev} parent ffff: matchall"
                 " action mirred egress redirect dev ifb0"
                 f" && tc qdisc add dev ifb0 root netem {SHAPE}")

    def set(self, netem: str) -> None:
        probe.sh(self.node, f"tc qdisc change dev {self.dev} root netem {netem}"
                 f" && tc qdisc change dev ifb0 root netem {netem}")

    def show(self) -> str:
        return probe.sh(self.node, f"tc -s qdisc show dev {self.dev}; tc -s qdisc show dev ifb0")

    def connect_ms(self, port: int, count: int = 30) -> list[float]:
        """Milliseconds for a TCP connect from the guest to the broker (one round trip through
        both shapers; the image has no ping), ``count`` times; a lost SYN costs its retry."""
        out = probe.sh(self.node, "/opt/camnode/.venv/bin/python -c '"
                       "import socket, time\n"
                       f"for _ in range({count}):\n"
                       "    t = time.monotonic()\n"
                       f"    socket.create_connection((\"10.0.2.2\", {port}), timeout=10).close()\n"
                       "    print(round((time.monotonic() - t) * 1000, 1))\n"
                       "    time.sleep(0.2)'", timeout=600)
        return [float(x) for x in out.split()]


def _station_args(ward: Path, port: int, user: str) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port), "--username", user,
            "--password-file", str(ward / "users" / user / "password"),
            "--tls-ca", str(ward / "pki" / "ca.crt")]


def _clip(node, port: int, start: datetime, end: datetime, out: Path, idle_s: float,
          wall_s: float) -> tuple[int, str, float]:
    """``camnode-station clip`` as the operator runs it: (exit code, output, seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "station.cli", "clip",
                        *_station_args(node.ward, port, TOOL_USER), NODE_ID,
                        "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "--end", end.strftime("%Y-%m-%dT%H:%M:%SZ"), "--out", str(out),
                        "--timeout", str(idle_s)],
                       cwd=REPO, capture_output=True, text=True, timeout=wall_s)
    return r.returncode, (r.stdout + r.stderr).strip(), time.monotonic() - t0


def _journal_events(node) -> dict[str, int]:
    """{event id: start in µs} of every event the node journalled (its own record)."""
    out = probe.sh(node, f"grep -h '\"t\":\"event\"' {STORE}/journal.jsonl || true")
    starts: dict[str, int] = {}
    for line in out.splitlines():
        e = json.loads(line)
        if e["event_id"].startswith("hold:"):
            continue
        starts.setdefault(e["event_id"], e["start_us"])
    return starts


def _first_arrivals(node) -> tuple[list[tuple[str, str]], int]:
    """(id, phase) of the event messages the station received, first arrival of each, in order;
    and how many arrived again (the node resends until the archive acknowledges)."""
    topic = f"camnode/{NODE_ID}/event"
    with node.station.cond:
        msgs = [json.loads(p) for _, tp, p in node.station.messages if tp == topic]
    seen: dict[tuple[str, str], int] = {}
    for m in msgs:
        key = (m["id"], m["phase"])
        seen[key] = seen.get(key, 0) + 1
    return list(seen), sum(n - 1 for n in seen.values())


def test_a_4g_link_with_three_outages(node, tmp_path, figure):
    archive = f"sqlite:///{tmp_path / 'archive.sqlite'}"
    port = json.loads((node.ward / "ward.json").read_text())["broker"]["port"]
    serve = ServeProcess(port, archive, tmp_path / "serve.log",
                         *_station_args(node.ward, port, ARCHIVE_USER)[4:], client_id=ARCHIVE_USER)
    try:
        assert serve.wait_log("subscribed", 60), serve.log()[-2000:]
        _run(node, port, tmp_path, serve, figure)
    finally:
        assert serve.stop() == 0, serve.log()[-2000:]


def _run(node, port: int, tmp_path: Path, serve: ServeProcess, say) -> None:
    probe.heartbeat(node, probe.recording, timeout=900, what="with frames encoded")
    link = Link(node)
    rtt = sorted(link.connect_ms(port))
    say(f"link: shaped link ({SHAPE}, both ways): TCP connect from the guest to the broker, 30 times: "
          f"median {statistics.median(rtt):.0f} ms, min {rtt[0]:.0f}, 90th {rtt[26]:.0f}, "
          f"max {rtt[-1]:.0f} (a lost SYN is retried after 1 s)")
    assert 160 <= statistics.median(rtt) <= 2000, rtt  # 2 x 80 ms at least: the shaping is there
    t_shaped = time.monotonic()
    probe.heartbeat(node, lambda hb: True, timeout=60, what="over the shaped link")
    time.sleep(max(0.0, UP_S - (time.monotonic() - t_shaped)))

    # a clip of a minute of footage, pulled over the shaped link (times on the node's clock)
    _, hb = probe.heartbeat(node, lambda hb: bool(hb["recorder"].get("last_segment")), timeout=300,
                            what="naming a closed segment")
    end = datetime.fromisoformat(hb["utc"].replace("Z", "+00:00")) - timedelta(seconds=15)
    code, out, took = _clip(node, port, end - timedelta(seconds=CLIP_S), end, tmp_path / "clip", 60, 900)
    say(f"link: clip pull of {CLIP_S} s over the shaped link: exit {code} in {took:.1f} s: {out}")
    if code == 0:
        clip = next((tmp_path / "clip").glob("*.mp4"))
        r = subprocess.run([sys.executable, "-m", "node.cli", "verify", str(clip), "--pubkey",
                            str(node.ward / NODE_ID / "signing.pub")], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        say(f"link:   {clip.stat().st_size} bytes, {clip.stat().st_size * 8 / took / 1000:.0f} kbit/s "
              f"end to end; verify: {r.stdout.strip()}")
    else:
        assert len(out.splitlines()) == 1 and out.startswith("camnode-station: "), out

    resumed: list[float] = []
    for k in range(OUTAGES):
        _, before = probe.heartbeat(node, lambda hb: True, timeout=60)
        connects = before["link"]["connects"]
        link.set(OUTAGE)
        t_down = time.monotonic()
        if k == 0:  # a clip asked for while the link is down: a reason and an exit, not a hang
            code, out, took = _clip(node, port, end - timedelta(seconds=20), end,
                                    tmp_path / "clip-down", 20, 300)
            say(f"link: clip pull during outage 1: exit {code} in {took:.1f} s: {out}")
            assert code != 0 and len(out.splitlines()) == 1 and out.startswith("camnode-station: "), out
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_down)))
        silent = probe.heartbeats_between(node, t_down + 5.0, time.monotonic())
        assert not silent, f"heartbeats arrived during outage {k + 1}: {silent[:2]}"
        link.set(SHAPE)
        t_up = time.monotonic()
        t, hb = probe.heartbeat(node, lambda hb, c=connects: hb["link"]["connects"] > c, after=t_up,
                                timeout=300, what="from a new connection")
        resumed.append(t - t_up)
        say(f"link: outage {k + 1} ({OUTAGE_S:.0f} s): heartbeats back {t - t_up:.1f} s after the link "
              f"returned; outbox then {hb['link'].get('outbox')}")
        time.sleep(UP_S)

    # everything queued reaches the archive: every event the node ended (its journal: an event is
    # journalled when it ends, before its end message is queued) is archived, ended
    db = tmp_path / "archive.sqlite"
    ended = _journal_events(node)
    assert ended, "the node raised no event during the run"

    def all_ended() -> bool:
        rows = _archived(db)
        return all(i in rows and rows[i]["phase"] == "end" for i in ended)

    t0 = time.monotonic()
    assert wait_until(all_ended, 600, step=2.0), sorted(set(ended) - set(_archived(db)))
    drained = time.monotonic() - t0
    rows = _archived(db)
    assert {r["id"] for r in events_cli(serve_db(serve))} == set(rows)  # as the operator sees it
    for i, start_us in ended.items():
        # the message carries milliseconds, the journal microseconds
        assert rows[i]["start"] == from_us(start_us // 1000 * 1000).replace(tzinfo=None), (i, rows[i])
    # the rest are events still open when the journal was read: the newest, started, not ended
    still_open = set(rows) - set(ended)
    assert len(still_open) <= 2 and all(rows[i]["phase"] == "start" and
                                        rows[i]["start"] > max(rows[j]["start"] for j in ended)
                                        for i in still_open), [rows[i] for i in still_open]
    order = sorted(rows, key=lambda i: rows[i]["start"])
    by_arrival = sorted(rows, key=lambda i: (rows[i]["received"], rows[i]["start"]))
    assert by_arrival == order, "archived out of order"
    firsts, again = _first_arrivals(node)
    starts = [i for i, phase in firsts if phase == "start" and i in rows]
    assert starts == [i for i in order if i in starts], "first deliveries out of order"
    say(f"link: events: {len(ended)} ended by the node, each archived with its start and end, in order "
          f"({len(still_open)} still open at the end, archived as started); the last arrived "
          f"{drained:.0f} s after the check began; {len(firsts)} distinct messages, {again} copies "
          "sent again and de-duplicated by the archive")
    say(f"link: heartbeats back after each outage: {[round(x, 1) for x in resumed]} s")
    print(link.show())  # the qdiscs' counters (drops), for the log
    assert max(resumed) <= RESUME_S, resumed


def _archived(db: Path) -> dict[str, dict]:
    """The archive's event rows, read straight from its SQLite file: id, start, phase, received."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, start, phase, received, messages FROM events").fetchall()
    finally:
        con.close()
    return {i: {"id": i, "start": datetime.fromisoformat(s), "phase": ph,
                "received": datetime.fromisoformat(rc), "messages": m} for i, s, ph, rc, m in rows}


def serve_db(serve: ServeProcess) -> str:
    cmd = serve.proc.args
    return cmd[cmd.index("--db") + 1]

