"""People at night and at a distance (issue 14): today's pipeline against the previous one.

Both pipelines run in the same process on the same decoded frames, one after the other, the
previous one from ``bench/previous-pipeline.toml`` (the settings that reproduce the pipeline
before issue 14), today's from the defaults. Frames are handed over at ``[motion] fps`` as the
node does; inference is inline (deterministic) with the real TFLite model.

Per clip and pipeline:

* **person-time coverage** — the share of the time a person is visible that lies inside a
  person event (clips with people; ground truth from the shared media's SOURCES.md);
* **false events** — person events overlapping no visible person (all of them on clips
  without people);
* **model calls/s** — model invocations (crops and tiles) per second of video;
* **CPU** — process time of the analyzer per second of video, in % of one core (motion,
  crops, inference; decoding excluded).

On the night walker clip also: the first frame the model on the whole frame plus 2x2 tiles
sees the person, and when each pipeline published its first person event.

Run: ``.venv/bin/python bench/bench_night.py`` (part of ``make bench``). Needs the shared
footage and model (``../shared`` beside the repository, or ``$CAMNODE_SHARED``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hw.camera.night_nuisances import Headlight, Insect, Rain  # noqa: E402
from hw.camera.synthetic import SceneScript, SyntheticSource  # noqa: E402
from hw.infer import Detector  # noqa: E402
from node.clock import FakeClock  # noqa: E402
from node.config import Config, load_config  # noqa: E402
from node.events import PublishEvent  # noqa: E402
from node.vision.analyzer import Analyzer  # noqa: E402
from node.vision.crops import crop_rgb, plan_tiles  # noqa: E402
from node.vision.video_frames import EPOCH, decode_clip  # noqa: E402

SHARED = Path(os.environ.get("CAMNODE_SHARED", REPO.parent / "shared")).resolve()
VIDEOS = SHARED / "media" / "videos"
MODEL = SHARED / "models" / "ssd_mobilenet_v1_coco_quant.tflite"
PREVIOUS = REPO / "bench" / "previous-pipeline.toml"

#: visible person intervals (s) per clip; [] = no person in the clip
TRUTH: dict[str, list[tuple[float, float]]] = {
    "night-person-walking.avi": [(0.0, 6.25)],  # in every frame (SOURCES.md)
    "night-ir-cat.avi": [],
    "one-by-one-person-detection.mp4": [(a / 10, b / 10) for a, b in
                                        [(62, 195), (229, 444), (505, 694), (745, 863), (925, 1194),
                                         (1237, 1357)]],
    "car-detection.mp4": [],
    "highway-bgs.avi": [],
    "synthetic night: moths, spider, headlights, rain": [],
    # hard case: dozens of small people seen from straight above, fewer later (SOURCES.md)
    "aerial-crossing-pedestrians.mp4": [(0.0, 17.5)],
}


def synthetic_night() -> list:
    script = SceneScript(
        illumination=lambda t: 0.25, grain_sigma=3.0,
        insects=[Insect(1.0, 5.0, "moth", seed=1), Insect(3.0, 8.0, "moth", size=0.05, x=0.6, seed=3),
                 Insect(1.0, 9.0, "spider", size=0.12, x=0.3, y=0.3, seed=2)],
        headlights=[Headlight(1.5, 2.0), Headlight(5.0, 2.5, from_x=1.2, to_x=-0.2, y=0.55, gain=3.0)],
        rain=[Rain(1.0, 9.0), Rain(1.0, 9.0, per_frame=15, length=0.2, luma=120, seed=5)])
    src = SyntheticSource(640, 360, 10.0, (320, 180), FakeClock(), script=script, realtime=False,
                          max_frames=120)
    return list(src.frames())


def at_rate(frames: list, fps: float) -> list:
    out, last = [], None
    for f in frames:
        if last is None or f.mono - last >= 0.95 / fps:
            out.append(f)
            last = f.mono
    return out


@dataclasses.dataclass
class Result:
    coverage: float | None
    false_events: int
    events: int
    calls_s: float
    cpu_pct: float
    published: list[float]  # frame times (s from the clip's start) person events were published at


def run(cfg: Config, frames: list, truth: list, detector: Detector) -> Result:
    an = Analyzer(cfg.motion, cfg.detect, FakeClock(), detector=detector, threaded=False, base_dir=SHARED)
    spans, published = [], []
    cpu0 = time.process_time()
    acts = []
    for f in frames:
        for a in an.process(f):
            acts.append(a)
            p = a.payload if isinstance(a, PublishEvent) else {}
            if p.get("kind") == "object" and p.get("phase") == "start" and "person" in p["classes"]:
                published.append(f.mono - frames[0].mono)
    acts += an.close()
    cpu = time.process_time() - cpu0
    for a in acts:
        p = a.payload if isinstance(a, PublishEvent) else {}
        if p.get("kind") == "object" and p.get("phase") == "end" and "person" in p["classes"]:
            spans.append(tuple((datetime.fromisoformat(p[k].replace("Z", "+00:00")) - EPOCH).total_seconds()
                               - frames[0].mono for k in ("start", "end")))
    seconds = frames[-1].mono - frames[0].mono + (frames[1].mono - frames[0].mono)
    visible = sum(b - a for a, b in truth)
    covered = sum(max(0.0, min(e, b) - max(s, a)) for a, b in truth for s, e in spans)
    false = sum(not any(s <= b and e >= a for a, b in truth) for s, e in spans)
    h = an.health()["detect"]
    return Result(covered / visible if visible else None, false, len(spans), h["crops"] / seconds,
                  100.0 * cpu / seconds, published)


def first_tiled(frames: list, detector: Detector) -> float | None:
    """Frame time of the first frame where the model on the whole frame plus 2x2 tiles sees a
    person (score ≥ 0.5): the ground truth the first event is timed against."""
    for f in frames:
        for crop in plan_tiles(f.width, f.height):
            rgb = crop_rgb(f.main, f.width, f.height, crop, detector.input_size)
            if any(d.class_id == 0 for d in detector.detect(rgb, 0.5)):
                return f.mono - frames[0].mono
    return None


def main() -> None:
    for p in (VIDEOS, MODEL, PREVIOUS):
        if not p.exists():
            print(f"missing {p} (set CAMNODE_SHARED)")
            return
    pipelines = {"previous": load_config(PREVIOUS), "today": Config()}
    detector = Detector(MODEL, threads=Config().detect.threads)
    print("Person events on night, distant and day footage: today's pipeline vs the previous one")
    print("(same run, same frames at [motion] fps, inline inference; CPU = analyzer process time)")
    print(f"{'clip':50s} {'pipeline':9s} {'coverage':>9s} {'false ev':>8s} {'events':>6s} "
          f"{'calls/s':>8s} {'CPU %':>6s}")
    for name, truth in TRUTH.items():
        if name.startswith("synthetic"):
            frames = synthetic_night()
        else:
            frames = at_rate(decode_clip(VIDEOS / name), Config().motion.fps)
        res = {label: run(cfg, frames, truth, detector) for label, cfg in pipelines.items()}
        for label, r in res.items():
            cov = "-" if r.coverage is None else f"{100 * r.coverage:.0f} %"
            print(f"{name:50s} {label:9s} {cov:>9s} {r.false_events:8d} {r.events:6d} "
                  f"{r.calls_s:8.2f} {r.cpu_pct:6.1f}")
        if name.startswith("night-person"):
            t0 = first_tiled(frames, detector)
            for label, r in res.items():
                first = "none"
                if r.published:
                    first = f"{r.published[0]:.1f} s, {r.published[0] - t0:.1f} s after it"
                print(f"{'':50s} {label:9s} first tiled detection at {t0:.1f} s; first person event: {first}")
        old, new = res["previous"], res["today"]
        ratio = f"{new.cpu_pct / old.cpu_pct:.2f}x" if old.cpu_pct > 0 else "-"
        calls = f"{new.calls_s / old.calls_s:.2f}x" if old.calls_s > 0 else "-"
        print(f"{'':50s} {'ratio':9s} today/previous: CPU {ratio}, model calls {calls}")


if __name__ == "__main__":
    main()
