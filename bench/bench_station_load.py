"""Station load (issue 10): 64 simulated nodes (the node's real link and outbox, generated
events) plus two real ``camnode run`` processes, into the real ``camnode-station serve`` over
real mosquitto, at ten times a busy ward's event rate.

A busy ward: 50 poles, one object event per pole per minute at its busiest (start + end
messages, heartbeats every 10 s). Ten times that: 500 events/min spread over the 64 simulated
nodes (~8.3 events/s, ~17 event messages/s) plus the heartbeats of all 66 nodes.

Figures (per database): events sent and archived (nothing lost: every id archived; nothing
doubled: one row per id, and the database's own duplicate counter); ingest latency p50/p99 from
the node queueing an event to the archive's acknowledgement reaching the node's topic; the
service's CPU (% of one core) and peak RSS; the same-run ratio of events archived to sent.

Run: ``.venv/bin/python bench/bench_station_load.py [--seconds 60] [--only sqlite|postgresql]``
(``make bench`` runs 60 s; ``make bench-station-load`` the full 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from node.localbroker import LocalBroker  # noqa: E402
from station.archive import open_archive  # noqa: E402
from station.archive.schema import events  # noqa: E402
from tests.nodeproc import NodeProcess, write_config  # noqa: E402
from tests.pgdb import temporary_database  # noqa: E402
from tests.simnode import SimNode  # noqa: E402
from tests.stationproc import ServeProcess, outbox_rows, wait_until  # noqa: E402

SIM_NODES = 64
EVENTS_PER_MIN = 500  # ten times a busy ward (50 poles x 1 event/min)
HEARTBEAT_S = 10.0
BROKER_CONF = """listener {port} 127.0.0.1
allow_anonymous true
max_queued_messages 100000
max_inflight_messages 100
"""


class AckWatch:
    """Timestamps every archive acknowledgement (by event id) as a node would receive it."""

    def __init__(self, port: int) -> None:
        self.first_ack: dict[str, float] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        c.on_connect = lambda cl, *_: cl.subscribe("camnode/+/ack/event", qos=1)
        c.on_subscribe = lambda *_: ready.set()
        c.on_message = self._msg
        c.connect("127.0.0.1", port)
        c.loop_start()
        ready.wait(10)
        self.client = c

    def _msg(self, client, userdata, msg) -> None:
        now = time.monotonic()
        body = json.loads(msg.payload)
        for a in body.get("acks", [body]):
            if a.get("phase") == "start":
                with self.lock:
                    self.first_ack.setdefault(a["id"], now)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(db: str, seconds: float, tmp: Path) -> dict:
    broker = LocalBroker()
    broker.extra_conf = BROKER_CONF.format(port=broker.port)
    broker.start()
    serve = ServeProcess(broker.port, db, tmp / "serve.log", "--log-level", "WARNING")
    watch = AckWatch(broker.port)
    reals, sims = [], []
    try:
        wait_until(lambda: Path(tmp / "serve.log").exists(), 10)
        for i in range(2):
            storage = tmp / f"real{i}"
            cfg = write_config(tmp / f"real{i}.toml", port=broker.port, storage=storage, node_id=f"real-{i}",
                               heartbeat_s=HEARTBEAT_S)
            reals.append((storage, NodeProcess(cfg, tmp / f"real{i}.log")))
        sims = [SimNode(f"sim-{i:02d}", broker.port, tmp, ack_resend_s=30.0, seed=i).start()
                for i in range(SIM_NODES)]
        time.sleep(3)  # connect, and the service subscribes
        cpu0, t0 = proc_cpu_s(serve.proc.pid), time.monotonic()
        period = 60.0 / EVENTS_PER_MIN
        next_beat, k = t0, 0
        while (now := time.monotonic()) < t0 + seconds:
            sims[k % SIM_NODES].event(now)
            k += 1
            if now >= next_beat:
                for s in sims:
                    s.beat()
                next_beat += HEARTBEAT_S
            time.sleep(max(0.0, t0 + k * period - time.monotonic()))
        drained = wait_until(lambda: all(s.outbox() == 0 for s in sims), 120)
        elapsed = time.monotonic() - t0
        cpu = proc_cpu_s(serve.proc.pid) - cpu0
        rss = proc_peak_rss_mb(serve.proc.pid)
        for _, node in reals:
            node.signal(15)
        real_left = sum(len(outbox_rows(storage)) for storage, _ in reals)
    finally:
        for s in sims:
            s.close()
        for _, node in reals:
            node.close()
        watch.close()
        serve.stop()
        broker.cleanup()
    sent = {eid: s.sent_at[eid] for s in sims for eid in s.sent}
    engine = open_archive(db, migrate=False)
    with engine.connect() as conn:
        archived = {r.id: r.messages for r in conn.execute(select(events.c.id, events.c.messages)
                                                           .where(events.c.node.like("sim-%")))}
        real_rows = conn.execute(select(func.count()).select_from(events)
                                 .where(events.c.node.like("real-%"))).scalar()
    engine.dispose()
    lat = sorted((watch.first_ack[e] - t) * 1000 for e, t in sent.items() if e in watch.first_ack)
    return {"sent": len(sent), "archived": len(archived), "missing": len(set(sent) - set(archived)),
            "foreign": len(set(archived) - set(sent)), "drained": drained, "real_events": real_rows,
            "real_outbox_left": real_left, "p50_ms": statistics.median(lat) if lat else float("nan"),
            "p99_ms": lat[int(len(lat) * 0.99) - 1] if lat else float("nan"),
            "cpu_pct": 100 * cpu / elapsed, "rss_mb": rss, "seconds": seconds}


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the 66 links' goodbyes are not figures
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--only", choices=("sqlite", "postgresql"))
    args = ap.parse_args()
    print(f"{SIM_NODES} simulated + 2 real nodes, {EVENTS_PER_MIN} events/min (10x a busy ward), "
          f"{args.seconds:.0f} s per database")
    print(f"{'database':<11} {'sent':>6} {'archived':>8} {'lost':>5} {'doubled':>7} {'ratio':>6} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'serve CPU':>9} {'RSS MB':>7}  real nodes")
    for backend in ("sqlite", "postgresql"):
        if args.only not in (None, backend):
            continue
        with tempfile.TemporaryDirectory(prefix="camnode-load-") as tmp:
            if backend == "sqlite":
                r = run(f"sqlite:///{tmp}/archive.db", args.seconds, Path(tmp))
            else:
                with temporary_database() as url:
                    r = run(url, args.seconds, Path(tmp))
        doubled = r["foreign"]  # an id archived that was never sent (or twice: impossible by key)
        print(f"{backend:<11} {r['sent']:6d} {r['archived']:8d} {r['missing']:5d} {doubled:7d} "
              f"{r['archived'] / max(1, r['sent']):6.3f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} "
              f"{r['cpu_pct']:8.1f}% {r['rss_mb']:7.0f}  {r['real_events']} events archived, "
              f"{r['real_outbox_left']} left in their outboxes{'' if r['drained'] else ' (NOT DRAINED)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
