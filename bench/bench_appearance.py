"""Appearance attributes per object event (issue 10): cost against the 2 ms budget.

Per event the node names the colours of its best frame once or twice (start, end snapshot) and
classifies two boxes' sides. Timed here on real decoded frames of the shared footage (720p-ish
``one-by-one-person-detection.mp4`` and a 1080p frame made from it), for a person box and a
vehicle box; the figure is the median and p90 of :func:`node.vision.appearance.colours` plus
:func:`side`, and its ratio to the budget and to a snapshot JPEG encode of the same frame.

Run: ``.venv/bin/python bench/bench_appearance.py`` (part of ``make bench``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from node.vision.appearance import colours, side  # noqa: E402
from node.vision.snapshot import encode_jpeg  # noqa: E402

SHARED = Path(os.environ.get("CAMNODE_SHARED", REPO.parent / "shared")).resolve()
CLIP = SHARED / "media" / "videos" / "one-by-one-person-detection.mp4"
BUDGET_MS = 2.0


def frames(n: int = 20) -> list[tuple[np.ndarray, int, int]]:
    import av

    out = []
    with av.open(str(CLIP)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 10 == 0:
                yuv = f.reformat(format="yuv420p").to_ndarray()
                out.append((yuv, f.width & ~1, f.height & ~1))
            if len(out) == n:
                break
    return out


def upscale(yuv: np.ndarray, w: int, h: int, tw: int = 1920, th: int = 1080) -> tuple[np.ndarray, int, int]:
    ys, xs = (np.arange(th) * h // th), (np.arange(tw) * w // tw)
    y = yuv[:h][np.ix_(ys, xs)]
    planes = yuv[h:].reshape(2, h // 2, w // 2)
    cy, cx = (np.arange(th // 2) * (h // 2) // (th // 2)), (np.arange(tw // 2) * (w // 2) // (tw // 2))
    out = np.empty((th * 3 // 2, tw), np.uint8)
    out[:th] = y
    for i in range(2):
        out[th + i * th // 4: th + (i + 1) * th // 4] = planes[i][np.ix_(cy, cx)].reshape(th // 4, tw)
    return out, tw, th


def time_ms(fn, reps: int = 200) -> list[float]:
    xs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t0) * 1000)
    return xs


def main() -> int:
    if not CLIP.exists():
        print(f"footage not found: {CLIP} (set CAMNODE_SHARED)")
        return 1
    got = frames()
    sets = {"source": got, "1080p": [upscale(*f) for f in got[:5]]}
    person, vehicle = (0.40, 0.15, 0.58, 0.95), (0.05, 0.45, 0.45, 0.85)
    print(f"{'frames':<16} {'object':<8} {'median ms':>10} {'p90 ms':>8} {'p90/budget':>10} {'vs JPEG':>8}")
    for name, fs in sets.items():
        jpeg = statistics.median(time_ms(lambda f=fs[0]: encode_jpeg(f[0], f[1], f[2], person), 20))
        for label, box in (("person", person), ("car", vehicle)):
            xs = []
            for yuv, w, h in fs:
                xs += time_ms(lambda yuv=yuv, w=w, h=h, box=box, label=label:
                              (colours(yuv, w, h, box, label), side(box), side(box)), 40)
            xs.sort()
            p90 = xs[int(len(xs) * 0.9) - 1]
            size = f"{name} {fs[0][1]}x{fs[0][2]}"
            print(f"{size:<16} {label:<8} {statistics.median(xs):10.3f} {p90:8.3f} {p90 / BUDGET_MS:10.2f} "
                  f"{statistics.median(xs) / jpeg:7.2f}x")
    print(f"(budget {BUDGET_MS} ms per event; 'vs JPEG': against the snapshot encode of the same frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
