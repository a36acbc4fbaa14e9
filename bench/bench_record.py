"""Recording at 30-day scale (issue 3): index, retention, lookup, rebuild, container overhead.

Same-run figures, each against its target:

* index insert rate — 43,200 one-minute segments inserted one commit each, as the recorder does;
* retention sweep — at 43,200 segments: a sweep with nothing to delete and one that deletes the
  oldest segment (the steady state: one per minute) — target <= 50 ms;
* range lookup — a random 5-minute range among 43,200 rows — target <= 1 ms;
* rebuild — index lost, rebuilt from the files' seals (43,200 real sealed fMP4 files, small
  ones: the rebuild reads only each file's tail) — target <= 3 s;
* bytes written per byte of H.264 — real libx264 output written by the segment writer
  (fragmented MP4) and, for comparison, by PyAV's MPEG-TS muxer (the first form) — target
  <= 1.05.

``--soak N`` runs the SIGKILL campaign N times (200 for the soak target) instead.
Run: ``.venv/bin/python bench/bench_record.py [--segments 43200] [--soak 200]``.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.clock import FakeClock
from node.record import mp4box
from node.record.index import Index
from node.record.integrity import GENESIS, Signer
from node.record.retention import Policy, Retention
from node.record.segment import SegmentInfo, segment_name, to_us
from node.record.store import Store
from node.record.writer import SegmentWriter
from tests.record_media import T0, encode_packets

MIN_US = 60_000_000


def _template_segment(tmp: Path) -> bytes:
    """The media bytes of one real, tiny fMP4 segment (1 s of 64x64 H.264)."""
    info, pkts = encode_packets(1.0, size=(64, 64), kbps=50)
    closed: list[SegmentInfo] = []
    w = SegmentWriter(tmp / "tpl", 60.0, FakeClock(T0), on_closed=closed.append)
    w.start(info)
    for p in pkts:
        w.write(p)
    w.stop()
    path = closed[0].path
    assert path is not None
    return path.read_bytes()[: closed[0].media_bytes]


def make_store(root: Path, n: int, signer: Signer) -> None:
    """``n`` sealed one-minute segments over n/1440 day directories, chained."""
    media = _template_segment(root.parent)
    import hashlib

    sha = hashlib.sha256(media).hexdigest()
    prev = GENESIS
    t0 = to_us(T0)
    for i in range(n):
        seq = i + 1
        start = t0 + i * MIN_US
        info = SegmentInfo(seq, segment_name(start, seq), start, start + MIN_US, 900, 30, True, 0.0,
                           False, len(media), sha, prev).sealed(signer)
        d = root / info.name[:8]
        d.mkdir(parents=True, exist_ok=True)
        (d / info.name).write_bytes(media + mp4box.seal_box(info.seal_fields()))
        prev = info.chain


def bench_index(tmp: Path, n: int) -> dict[str, float]:
    idx = Index(tmp / "insert.db")
    t0 = to_us(T0)
    rows = [SegmentInfo(i + 1, f"s{i + 1}", t0 + i * MIN_US, t0 + (i + 1) * MIN_US, 900, 30, True, 0.0,
                        False, 9_000_000, "ab" * 32, GENESIS, "cd" * 32) for i in range(n)]
    start = time.perf_counter()
    for r in rows:
        idx.add(r, 9_000_000)
    dt = time.perf_counter() - start
    rng = random.Random(1)
    lookups = []
    for _ in range(2000):
        s = t0 + rng.randrange(n) * MIN_US + rng.randrange(MIN_US)
        a = time.perf_counter()
        got = idx.range(s, s + 5 * MIN_US)
        lookups.append(time.perf_counter() - a)
        assert 5 <= len(got) <= 6
    idx.close()
    lookups.sort()
    return {"insert_per_s": n / dt, "lookup_ms_median": statistics.median(lookups) * 1e3,
            "lookup_ms_p99": lookups[int(len(lookups) * 0.99)] * 1e3}


def bench_store(tmp: Path, n: int) -> dict[str, float]:
    root = tmp / "store"
    a = time.perf_counter()
    make_store(root, n, Signer.none())
    made = time.perf_counter() - a
    a = time.perf_counter()
    store = Store(root)
    rep = store.open()
    rebuild = time.perf_counter() - a
    assert rep["indexed_from_files"] == n, rep
    a = time.perf_counter()
    store.close()
    store = Store(root)
    store.open()  # the ordinary start: index present, reconcile only
    reopen = time.perf_counter() - a
    clock = FakeClock(T0 + timedelta(days=30, minutes=1))
    ret = Retention(store, clock, Policy(max_age_days=30, headroom_s=0, min_free_bytes=0))
    idle, one = [], []
    for _ in range(20):
        # nothing old enough: a sweep that deletes nothing
        a = time.perf_counter()
        clock.jump_wall(-3600)
        rep_idle = ret.sweep()
        idle.append(time.perf_counter() - a)
        clock.jump_wall(3600)
        assert rep_idle.deleted_age == 0
        clock.advance(60)  # one more minute: exactly one segment ages out
        a = time.perf_counter()
        r = ret.sweep()
        one.append(time.perf_counter() - a)
        assert r.deleted_age >= 1, r
    store.close()
    return {"files_made_s": made, "rebuild_s": rebuild, "reopen_s": reopen,
            "sweep_idle_ms": statistics.median(idle) * 1e3,
            "sweep_delete_one_ms": statistics.median(one) * 1e3,
            "sweep_max_ms": max(idle + one) * 1e3}


def bench_overhead(tmp: Path) -> list[tuple[str, float, float]]:
    import av

    out = []
    for size, kbps in (((640, 360), 300), ((1280, 720), 1200)):
        info, pkts = encode_packets(30.0, size=size, kbps=kbps, gop_s=2.0)
        h264 = sum(len(p.data) for p in pkts)
        w = SegmentWriter(tmp / f"ovh{kbps}", 10.0, FakeClock(T0))
        w.start(info)
        for p in pkts:
            w.write(p)
        w.stop()
        fmp4 = w.bytes_written / h264
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as oc:
            vs = oc.add_stream("h264", rate=int(info.fps))
            vs.width, vs.height = info.width, info.height
            for p in pkts:
                pk = av.Packet(p.data)
                pk.pts, pk.dts = p.pts, p.dts
                pk.time_base = vs.time_base = __import__("fractions").Fraction(1, 90_000)
                pk.stream = vs
                oc.mux(pk)
        ts = len(buf.getvalue()) / h264
        out.append((f"{size[0]}x{size[1]} {kbps} kbit/s", fmp4, ts))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=43_200, help="one-minute segments (30 days)")
    ap.add_argument("--soak", type=int, default=0, help="run the SIGKILL campaign this many times")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-record-"))
    try:
        if args.soak:
            from tests.conftest import shared_path
            from tests.record_crash import run_campaign

            clip = shared_path() / "media" / "videos" / "one-by-one-person-detection.mp4"
            a = time.perf_counter()
            camp = run_campaign(tmp / "soak", clip, kills=args.soak, seed=200)
            print(f"SIGKILL soak: {camp.kills} kills in {time.perf_counter() - a:.0f} s, "
                  f"{camp.segments} segments kept, {camp.recovered} recovered, "
                  f"{camp.removed_parts} empty parts removed")
            print(f"  lost per cut: median {statistics.median(camp.losses_s):.2f} s, "
                  f"max {max(camp.losses_s):.2f} s (target <= 2 s)")
            print(f"  problems: {len(camp.problems)}")
            for p in camp.problems[:10]:
                print(f"    {p}")
            return 1 if camp.problems or max(camp.losses_s) > 2.1 else 0
        n = args.segments
        print(f"recording at 30-day scale: {n} one-minute segments")
        ix = bench_index(tmp, n)
        print(f"  index insert (one commit each): {ix['insert_per_s']:,.0f} segments/s")
        print(f"  range lookup (5 min):           median {ix['lookup_ms_median']:.3f} ms, "
              f"p99 {ix['lookup_ms_p99']:.3f} ms   (target <= 1 ms)")
        st = bench_store(tmp, n)
        print(f"  rebuild index from files:       {st['rebuild_s']:.2f} s   (target <= 3 s)"
              f"   [ordinary start with the index: {st['reopen_s']:.2f} s]")
        print(f"  retention sweep:                idle {st['sweep_idle_ms']:.1f} ms, "
              f"deleting one {st['sweep_delete_one_ms']:.1f} ms, max {st['sweep_max_ms']:.1f} ms"
              f"   (target <= 50 ms)")
        print("  bytes written per byte of H.264 (target <= 1.05):")
        for label, fmp4, ts in bench_overhead(tmp):
            print(f"    {label:22s} fragmented MP4 {fmp4:.4f}   MPEG-TS {ts:.4f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
