"""Hardware-layer costs, each next to what it replaces, measured in the same run.

1. On-screen text: the per-frame cost of stamping (one masked copy of the text patch) vs a
   naive full-frame render (rasterise the text and blend it over the whole Y plane), at 720p
   and 1080p; plus the once-a-second re-render.
2. IP camera path: passthrough (packets recorded as they are; only a lores image decoded) vs
   decode + libx264 re-encode of the same clip, per frame.
3. Encoder selection: how long probing every candidate takes at start.
4. Platform probe at start vs the heartbeat's temperature/throttling reads.

Run: ``.venv/bin/python bench/bench_hw.py`` (≈15 s). Figures vary with load; compare within a
run, not across machines.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hw.overlay import TextOverlay, render_mask  # noqa: E402


def per_call(fn, n: int) -> float:
    """Median-of-3 seconds per call."""
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - t0) / n)
    return sorted(runs)[1]


def _overlay_at(w: int, h: int, t: datetime) -> tuple[float, float, float]:
    main = np.random.default_rng(1).integers(16, 235, size=(h * 3 // 2, w), dtype=np.uint8)
    ov = TextOverlay("Duong Le Loi 12", "Asia/Ho_Chi_Minh")
    ov.apply(main, w, h, t)
    stamp = per_call(lambda i: ov.apply(main, w, h, t), 2000)
    rerender = per_call(lambda i: ov.apply(main, w, h, t + timedelta(seconds=i + 1)), 200)
    scale = max(1, h // 240)

    def full_frame(i: int) -> None:
        # The naive way: a full-frame text layer rendered and blended every frame.
        glyph, ring = render_mask(list(ov.lines(t)), scale)
        layer = np.zeros((h, w), np.uint8)
        alpha = np.zeros((h, w), bool)
        layer[8:8 + glyph.shape[0], 8:8 + glyph.shape[1]] = np.where(glyph, 235, 16)
        alpha[8:8 + glyph.shape[0], 8:8 + glyph.shape[1]] = glyph | ring
        main[:h] = np.where(alpha, layer, main[:h])

    return stamp, rerender, per_call(full_frame, 50)


def bench_overlay() -> None:
    print("== on-screen text (per frame)")
    t = datetime(2026, 11, 22, 0, 5, 9, tzinfo=UTC)
    for w, h in ((1280, 720), (1920, 1080)):
        stamp, rerender, full = _overlay_at(w, h, t)
        print(f"  {w}x{h}: stamp {stamp * 1e6:7.1f} us | a frame that re-renders (once a second) "
              f"{rerender * 1e6:7.1f} us | full-frame render {full * 1e6:8.1f} us "
              f"({full / stamp:.0f}x the stamp)")


def bench_passthrough(clip: Path) -> None:
    from hw.camera.pyav import PyAVSource
    from hw.encode.libav import LibavEncoder
    from hw.media import StreamInfo
    from node.clock import FakeClock

    print(f"== IP camera path ({clip.name}, per frame)")
    n = 150
    src = PyAVSource(str(clip), 768, 432, 12.5, (320, 180), FakeClock(), realtime=False,
                     loop=False, passthrough=True, max_frames=n)
    t0 = time.perf_counter()
    frames = list(src.frames())
    pt = (time.perf_counter() - t0) / len(frames)
    src = PyAVSource(str(clip), 768, 432, 12.5, (320, 180), FakeClock(), realtime=False,
                     loop=False, max_frames=n)
    enc = LibavEncoder(1200, 2.0)
    enc.start(StreamInfo("h264", 768, 432, 12.5))
    t0 = time.perf_counter()
    count = 0
    for f in src.frames():
        enc.encode(f)
        count += 1
    enc.flush()
    re = (time.perf_counter() - t0) / count
    print(f"  passthrough + lores decode {pt * 1e3:6.2f} ms | decode + libx264 re-encode "
          f"{re * 1e3:6.2f} ms ({re / pt:.1f}x)")


def bench_encoder_probe() -> None:
    from hw.encode.select import open_encoder
    from hw.media import StreamInfo

    print("== encoder selection at start (1280x720)")
    t0 = time.perf_counter()
    enc, report = open_encoder(None, StreamInfo("h264", 1280, 720, 15.0), bitrate_kbps=1200, gop_s=2.0)
    total = time.perf_counter() - t0
    enc.close()
    for a in report.attempts:
        print(f"  {a.name:<14} {'ok' if a.ok else 'rejected':<9} {a.probe_ms:6.1f} ms")
    print(f"  total {total * 1e3:.1f} ms, chosen {report.chosen}")


def bench_platform() -> None:
    from hw.platform import probe

    print("== platform probe (fixture Pi 4 tree)")
    root = REPO / "tests" / "fixtures" / "boards" / "pi4"
    p = per_call(lambda i: probe(root, vcgencmd=lambda: None), 200)
    info = probe(root)
    tr = per_call(lambda i: (info.temperatures(), info.throttled()), 2000)
    print(f"  probe at start {p * 1e3:6.2f} ms | heartbeat temperatures+throttling {tr * 1e6:6.1f} us")


def main() -> None:
    bench_overlay()
    shared = Path(__import__("os").environ.get("CAMNODE_SHARED", REPO.parent / "shared"))
    clip = shared / "media" / "videos" / "car-detection.mp4"
    if clip.exists():
        bench_passthrough(clip)
    else:
        print(f"== IP camera path: {clip} not found, skipped")
    bench_encoder_probe()
    bench_platform()


if __name__ == "__main__":
    main()
