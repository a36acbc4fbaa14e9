"""The node's own CPU cost per second of video, and its peak memory (issue: foundation).

For the synthetic 1080p30 source with a 320x240 lores stream, each case runs in its own
process (so peak RSS is its own) over the same frames:

* source     — drawing the synthetic scene alone (the camera's cost, reported apart);
* encode     — the node with libx264 (software encoder) + segment recorder;
* passthrough — the node fed pre-encoded H.264 packets, as a hardware encoder or an IP camera
               hands them over: queueing, fan-out, segment muxing and the lores hand-off.

Prints CPU seconds per second of video (1.0 = one core busy) and peak RSS per case, and the
ratio of encode to passthrough. Targets: passthrough ≤ 0.05 core, RSS ≤ 150 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

W, H, FPS, LORES = 1920, 1080, 30.0, (320, 240)
WARMUP = 30  # frames: past the encoder probe, the model load and the first-call imports


def _config(storage: Path):
    from node.config import config_from_dict

    return config_from_dict({
        "camera": {"source": "synthetic", "width": W, "height": H, "fps": FPS,
                   "lores_width": LORES[0], "lores_height": LORES[1], "realtime": False},
        "storage": {"path": str(storage), "segment_s": 10.0},
        "encoder": {"bitrate_kbps": 4000, "gop_s": 2.0},
        "mqtt": {"port": 1, "reconnect_max_s": 600.0},  # no broker: the link idles
    })


class ReplaySource:
    """Frames prepared in advance (packets + lores), handed over at no cost."""

    encoded = True
    name = "replay"

    def __init__(self, frames) -> None:
        self._frames = frames
        self.width, self.height, self.fps = W, H, FPS

    def frames(self):
        # paced like a camera (sleeping costs no CPU), so the bounded queue drops nothing
        t0 = time.monotonic()
        for i, f in enumerate(self._frames):
            wait = t0 + i / FPS - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield f

    def close(self) -> None:
        pass

    def describe(self):
        return {"backend": "replay"}


def prepare(path: Path, n: int) -> None:
    """Encode the scene once (in its own process) into packets + lores planes on disk."""
    import pickle

    from hw.camera.synthetic import SyntheticSource
    from hw.encode.libav import LibavEncoder
    from hw.media import StreamInfo
    from node.clock import SystemClock

    src = SyntheticSource(W, H, FPS, LORES, SystemClock(), realtime=False, max_frames=n)
    enc = LibavEncoder(4000, 2.0)
    enc.start(StreamInfo("h264", W, H, FPS))
    items = []
    for f in src.frames():
        for p in enc.encode(f):
            items.append((p, f.lores if len(items) < 30 else None))
    path.write_bytes(pickle.dumps(items))


def load_prepared(path: Path, n: int):
    """Frames carrying only what a hardware path delivers: the packet and the lores plane."""
    import pickle

    from hw.media import Frame

    items = pickle.loads(path.read_bytes())
    lores = [lo for _, lo in items if lo is not None]
    return [Frame(seq=p.seq, mono=p.mono, utc=p.utc, width=W, height=H, main=None,
                  lores=lores[i % len(lores)], packet=p) for i, (p, _) in enumerate(items[:n])]


def run_case(mode: str, n: int, prepared: str = "") -> dict:
    from hw.camera.synthetic import SyntheticSource
    from node.app import Node
    from node.clock import SystemClock

    clock = SystemClock()
    with tempfile.TemporaryDirectory() as tmp:
        src = SyntheticSource(W, H, FPS, LORES, clock, realtime=mode == "encode", max_frames=n)
        dropped, startup = 0, 0.0
        if mode == "source":
            t0 = time.process_time()
            for _ in src.frames():
                pass
            cpu = time.process_time() - t0
        else:
            if mode == "passthrough":
                src = ReplaySource(load_prepared(Path(prepared), n))
            node = Node(_config(Path(tmp)), clock=clock, source=src)
            t0 = time.process_time()
            node.start()
            # steady state: from the WARMUP-th encoded frame to the end (start-up reported apart)
            counters = node.pipeline.counters
            while counters.frames_encoded < WARMUP and node.pipeline.alive() and not node.join(0.005):
                pass
            t1, f1 = time.process_time(), counters.frames_encoded
            node.join()
            cpu = time.process_time() - t1
            startup = t1 - t0
            node.stop()
            dropped = node.pipeline.encode_q.dropped
            n = counters.frames_encoded - f1
    return {"mode": mode, "frames": n, "dropped": dropped, "startup_cpu_s": startup, "cpu_s": cpu,
            "cpu_per_video_s": cpu / (n / FPS),
            "ms_per_frame": 1000 * cpu / n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--prepared", default="")
    args = ap.parse_args()
    if args.case == "prepare":
        prepare(Path(args.prepared), args.frames)
        return
    if args.case:
        print(json.dumps(run_case(args.case, args.frames, args.prepared)))
        return
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = str(Path(tmp) / "packets.pickle")
        for case in ("prepare", "source", "passthrough", "encode"):
            out = subprocess.run([sys.executable, __file__, "--case", case, "--frames", str(args.frames),
                                  "--prepared", prepared], capture_output=True, text=True, check=True)
            if case != "prepare":
                res[case] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"node pipeline, synthetic {W}x{H}@{FPS:.0f} + lores {LORES[0]}x{LORES[1]}, "
          f"{args.frames} frames per case")
    print(f"{'case':<12} {'CPU s per video s':>18} {'ms/frame':>9} {'peak RSS MB':>12} {'dropped':>8} "
          f"{'start-up CPU s':>15}")
    for case, r in res.items():
        print(f"{case:<12} {r['cpu_per_video_s']:>18.3f} {r['ms_per_frame']:>9.2f} "
              f"{r['peak_rss_mb']:>12.1f} {r['dropped']:>8} {r['startup_cpu_s']:>15.2f}")
    print(f"(steady state after the first {WARMUP} frames; start-up = probe, GPIO, encoder choice, "
          "analyzer, first imports)")
    pt, enc = res["passthrough"]["cpu_per_video_s"], res["encode"]["cpu_per_video_s"]
    print(f"non-encode path: {100 * pt:.1f}% of one core (target <= 5%); "
          f"software encode path costs {enc / pt:.0f}x the passthrough path")
    print(f"peak RSS: passthrough {res['passthrough']['peak_rss_mb']:.0f} MB (the Pi/IP-camera path; "
          f"includes {args.frames} pre-encoded packets held in RAM), software encode "
          f"{res['encode']['peak_rss_mb']:.0f} MB (target <= 150 MB)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
