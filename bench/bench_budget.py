"""The storage budget, measured: the tables of docs/recording.md ("Storage budget").

1. quality vs bitrate on the shared clips (libx264 ultrafast, CRF sweep, 4 s GOP): kbit/s,
   bits per pixel, PSNR and SSIM of the decoded recording against the source (luma);
2. a simulated 24 h day at 1080p15 (day traffic, dusk, IR night with grain, dawn), synthetic
   and real footage, encoded by the real codec under the budget loop with an injected clock
   over several simulated days: bytes per day, projected days on a 128 GB card, quality;
   from day 4 the real night gets grainier (the IR trail-camera clip): the loop's answer;
3. the event tier's cost, the keyframe interval, frame-rate reduction on a still scene;
4. bytes written by the recorder per byte of H.264 at the budget's rate (≤ 1.05).

Every figure is a same-run comparison; nothing here is a speed target.
``--quick`` runs at 640x360 (a smoke run); the docs table is the default 1920x1080.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.encode.libav import LibavEncoder
from hw.encode.rate import RateSettings
from hw.media import Frame, StreamInfo
from node.clock import FakeClock
from node.record.ratecontrol import DAY_S
from node.record.recorder import Recorder
from node.record.retention import Policy
from tests.budget_day import DaySampler, days_on, encode_sample, real_frames, simulate_days, videos

CLIPS = {"car-detection.mp4": "day, traffic (parking lot)",
         "one-by-one-person-detection.mp4": "day, indoor, people",
         "night-person-walking.avi": "night, street lamp, grain",
         "night-ir-cat.avi": "night, IR, sensor noise"}
CARD = 128e9
GOP_S = 4.0


def clip_info(path: Path) -> tuple[int, int, float]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.width, s.codec_context.height, float(s.average_rate or 25)


def quality_table(crfs: list[float]) -> None:
    print("\n## 1. quality vs bitrate on the shared clips (native size, 8 s, GOP 4 s)")
    print("| clip | scene | size@fps | CRF | kbit/s | bit/pixel | PSNR dB | SSIM |")
    print("|---|---|---|---|---|---|---|---|")
    for name, what in CLIPS.items():
        w, h, fps = clip_info(videos() / name)
        w, h = w // 2 * 2, h // 2 * 2
        frames = real_frames(videos() / name, w, h, min(int(8 * fps), 160))
        for crf in crfs:
            s = encode_sample(frames, w, h, fps, RateSettings(1000, GOP_S, crf, None, None),
                              quality_every=4)
            kbps = s.bytes_per_s * 8 / 1000
            print(f"| {name} | {what} | {w}x{h}@{fps:g} | {crf:g} | {kbps:.0f} | "
                  f"{kbps * 1000 / (w * h * fps):.4f} | {s.psnr:.1f} | {s.ssim:.3f} |", flush=True)


def simulate(kind: str, w: int, h: int, fps: float, days: int, seconds: float,
             grainier_from_day: int | None) -> None:
    """The budget loop over ``days`` simulated days, 30-minute observations, hourly steps."""
    rows, encodes = simulate_days(kind, w, h, fps, days, card=CARD, seconds=seconds,
                                  grainier_from_day=grainier_from_day)
    print(f"\n### {kind} footage, {w}x{h}@{fps:g}, {days} simulated days "
          f"({encodes} real encodes of {seconds:g} s)")
    print("| day | CRF (min-max) | written GB | budget GB/day | written/budget | "
          "projected days on 128 GB (this day's rate / mean so far) | kbit/s avg |")
    print("|---|---|---|---|---|---|---|")
    total = 0.0
    for r in rows:
        total += r.written
        print(f"| {r.day} | {r.crf_min:g}-{r.crf_max:g} | {r.written / 1e9:.2f} | "
              f"{r.budget / 1e9:.2f} | {r.written / r.budget:.2f} | {days_on(CARD, r.written):.1f} / "
              f"{days_on(CARD, total / r.day):.1f} | {r.written * 8 / DAY_S / 1000:.0f} |")
    print("| phase (last day) | CRF | kbit/s | PSNR dB | SSIM |")
    print("|---|---|---|---|---|")
    for phase, (crf, s) in rows[-1].phases.items():
        print(f"| {phase} | {crf:g} | {s.bytes_per_s * 8 / 1000:.0f} | {s.psnr:.1f} | {s.ssim:.3f} |")
    sys.stdout.flush()


def tradeoffs(w: int, h: int, fps: float, seconds: float, crf: float) -> None:
    print(f"\n## 3. trade-offs at {w}x{h}@{fps:g}, CRF {crf:g} (real footage unless said)")
    day = DaySampler("real", w, h, fps, seconds)
    syn = DaySampler("synthetic", w, h, fps, seconds)
    base = RateSettings(400, GOP_S, crf, None, None)
    print("| what | bytes ratio | PSNR dB | SSIM |")
    print("|---|---|---|---|")
    for label, sampler, phase in (("day", day, "day"), ("night", day, "night")):
        b = sampler.sample(phase, base)
        e = sampler.sample(phase, RateSettings(400, GOP_S, crf - 4, None, None))
        print(f"| event tier (CRF -4), {label} | {e.bytes_per_s / b.bytes_per_s:.2f} | "
              f"{b.psnr:.1f} → {e.psnr:.1f} | {b.ssim:.3f} → {e.ssim:.3f} |")
        for g in (2.0, 8.0):
            o = sampler.sample(phase, RateSettings(400, g, crf, None, None))
            print(f"| GOP {g:g} s vs 4 s, {label} | {o.bytes_per_s / b.bytes_per_s:.2f} | "
                  f"{o.psnr:.1f} | {o.ssim:.3f} |")
    # a still scene: the synthetic street without walkers, at full and a third of the rate
    still = DaySampler("synthetic", w, h, fps, seconds)
    full = still.sample("still", base)
    low = DaySampler("synthetic", w, h, fps / 3, seconds).sample("still", base)
    print(f"| still scene at {fps / 3:g} fps vs {fps:g} fps (synthetic) | "
          f"{low.bytes_per_s / full.bytes_per_s:.2f} | {full.psnr:.1f} | {full.ssim:.3f} |")
    # the libx264 preset: bytes at the same CRF, and the encode time as a same-run ratio
    for phase in ("day", "night"):
        frames = day.frames(phase)
        ref = encode_sample(frames, w, h, fps, base, quality_every=6)
        for preset in ("superfast", "veryfast"):
            o = encode_sample(frames, w, h, fps, base, quality_every=6, preset=preset)
            cpu = o.encode_cpu_s / ref.encode_cpu_s
            print(f"| preset {preset} vs ultrafast, {phase} (encoder CPU x{cpu:.1f}) | "
                  f"{o.bytes_per_s / ref.bytes_per_s:.2f} | {ref.psnr:.1f} → {o.psnr:.1f} | "
                  f"{ref.ssim:.3f} → {o.ssim:.3f} |")
    night_low = DaySampler("synthetic", w, h, fps / 3, seconds).sample("night", base)
    night_full = syn.sample("night", base)
    print(f"| still IR night at {fps / 3:g} fps vs {fps:g} fps (synthetic, grain) | "
          f"{night_low.bytes_per_s / night_full.bytes_per_s:.2f} | {night_full.psnr:.1f} | "
          f"{night_full.ssim:.3f} |")
    sys.stdout.flush()


def overhead(w: int, h: int, fps: float, crf: float) -> None:
    """Recorder bytes on disk per byte of H.264 at the budget's rate (real day footage)."""
    frames = real_frames(videos() / "car-detection.mp4", w, h, int(60 * fps))
    enc = LibavEncoder(0, GOP_S, rate=RateSettings(400, GOP_S, crf, 1200, 2400))
    enc.start(StreamInfo("h264", w, h, fps))
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    pkts = []
    for i, f in enumerate(frames):
        pkts += enc.encode(Frame(seq=i, mono=i / fps, utc=t0 + timedelta(seconds=i / fps), width=w,
                                 height=h, main=f, lores=f[:h:8, ::8]))
    pkts += enc.flush()
    with tempfile.TemporaryDirectory() as d:
        rec = Recorder(Path(d), FakeClock(t0), segment_s=20.0, threaded=False, preroll_s=0,
                       policy=Policy(headroom_s=0, min_free_bytes=0))
        rec.start(StreamInfo("h264", w, h, fps))
        for p in pkts:
            rec.write(p)
        rec.close()
        on_disk = sum(p.stat().st_size for p in Path(d).rglob("*.mp4"))
    h264 = sum(p.size for p in pkts)
    print(f"\n## 4. bytes on disk per byte of H.264, {w}x{h}@{fps:g} CRF {crf:g} "
          f"({h264 * 8 / (len(frames) / fps) / 1000:.0f} kbit/s, 60 s): "
          f"{on_disk / h264:.3f} (budget ≤ 1.05)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="640x360, fewer days (a smoke run)")
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--parts", default="1234", help="which tables (default: all four)")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each sampled clip")
    args = ap.parse_args()
    w, h, fps = (640, 360, 15.0) if args.quick else (1920, 1080, 15.0)
    days = 3 if args.quick else args.days
    if "1" in args.parts:
        quality_table([26, 30, 34, 38, 42] if not args.quick else [30, 38])
    if "2" in args.parts:
        print("\n## 2. a simulated 24 h day under the budget loop (128 GB card, 30-day target)")
        simulate("synthetic", w, h, fps, days, args.seconds, None)
        simulate("real", w, h, fps, days, args.seconds, grainier_from_day=min(4, days))
    if "3" in args.parts:
        tradeoffs(w, h, fps, 8.0, 36.0)
    if "4" in args.parts:
        overhead(w, h, fps, 36.0)


if __name__ == "__main__":
    main()
