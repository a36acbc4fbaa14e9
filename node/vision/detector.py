"""The object detector as the analyzer uses it: loaded from ``[detect]`` (or told why not), and
run on a job's crops.

:func:`load_detector` resolves the model and labels files, maps the configured class names
to the model's class ids (:data:`ALIASES` accepts common synonyms) and loads
:class:`hw.infer.Detector`. Whatever is missing — the model file, the runtime, the labels, every
configured class — it returns no detector and the reason, and the node runs motion only.

:func:`run_job` samples each crop at the model's input size (colour when the frame has pixels,
luma replicated otherwise), runs the model and maps its boxes back to frame pixels.

Thread: :func:`load_detector` at start; :func:`run_job` on the inference thread (or inline).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from node.vision.boxes import to_frame
from node.vision.crops import crop_luma3, crop_rgb
from node.vision.tracks import Found, dedupe
from node.vision.worker import Job

log = logging.getLogger(__name__)

#: Config names accepted for model labels.
ALIASES = {"motorbike": "motorcycle", "bike": "bicycle", "people": "person", "pedestrian": "person"}


def load_detector(cd: Any, detector: Any = None, base_dir: str | Path | None = None
                  ) -> tuple[Any, dict[int, str], str | None]:
    """``(detector, class ids → label, None)``, or ``(None, {}, reason)`` when detection is off.

    ``cd``: the ``[detect]`` section. ``detector``: an already loaded detector to use (tests,
    bench); labels and classes are still checked. ``base_dir``: where relative paths resolve.
    """
    from hw.infer import Detector, InferError, read_labels

    if not cd.enabled:
        return None, {}, "object detection disabled in config ([detect] enabled = false)"
    base = Path(base_dir) if base_dir else Path.cwd()
    model, labels_path = base / cd.model, base / cd.labels
    try:
        labels = read_labels(labels_path)
    except OSError as exc:
        return None, {}, f"labels file not readable: {labels_path} ({exc.strerror}); motion only"
    wanted = [ALIASES.get(c.lower(), c.lower()) for c in cd.classes]
    ids = {i: name for i, name in enumerate(labels) if name.lower() in wanted}
    unknown = sorted(set(wanted) - {n.lower() for n in ids.values()})
    if not ids:
        return None, {}, f"none of the classes {cd.classes} is in {labels_path.name}; motion only"
    if unknown:
        log.warning("classes not in the labels file, ignored: %s", ", ".join(unknown))
    if detector is None:
        if not model.is_file():
            return None, {}, f"model file not found: {model}; motion only"
        try:
            detector = Detector(model, threads=cd.threads)
        except InferError as exc:
            return None, {}, f"{exc}; motion only"
    return detector, ids, None


def run_job(detector: Any, class_ids: dict[int, str], score: float, job: Job, *, smooth: bool = True) -> None:
    """Run the model on the job's crops; sets ``job.found`` (deduplicated) and ``job.ms``.

    ``smooth``: small crops are enlarged bilinearly (see :func:`node.vision.crops.crop_rgb`)."""
    size = detector.input_size
    found: list[Found] = []
    t0 = time.perf_counter()
    for crop in job.crops:
        if job.colour:
            img = crop_rgb(job.image, job.width, job.height, crop, size, smooth=smooth)
        else:
            img = crop_luma3(job.image, crop, size)
        for d in detector.detect(img, score):
            label = class_ids.get(d.class_id)
            if label is not None:
                found.append(Found(label, d.score, to_frame(d.box, crop), job.seq, job.utc, job.mono))
    job.ms = (time.perf_counter() - t0) * 1000.0
    job.found = dedupe(found)
