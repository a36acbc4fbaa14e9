"""TFLite model loading and SSD-style object detection behind one small seam.

The runtime is chosen from an ordered list: ``ai_edge_litert`` (XNNPACK, numpy 1 and 2, wheels
for x86-64 and aarch64), then ``tflite_runtime`` (stopped at 2.14, needs ``numpy<2``, about 10x
slower on the quantised SSD). Nothing is imported at module import time: :func:`load_runtime`
imports on demand and reports *why* each candidate failed, so the node can say in its
diagnostics why detection is off instead of crashing.

A detection model's four outputs (boxes, classes, scores, count) are identified by name and
shape, never by position alone: TF1 exports name them ``TFLite_Detection_PostProcess:0..3``
(boxes, classes, scores, count) while TF2 exports order them differently
(``StatefulPartitionedCall:0..3``). When names do not decide, the two ``[1, N]`` outputs are
told apart by their values on the first call (class ids are whole numbers, usually > 1).

Thread: a :class:`Detector` is not thread-safe; use it from one thread (the inference thread).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Runtimes tried in this order: (label, module holding ``Interpreter``).
RUNTIMES: tuple[tuple[str, str], ...] = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)


class InferError(RuntimeError):
    """No runtime, or the model cannot be loaded or run. ``str()`` is the reason for humans."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One box of the model. ``box`` is ``(x0, y0, x1, y1)`` relative to the model input (0..1)."""

    class_id: int
    score: float
    box: tuple[float, float, float, float]


def load_runtime(preferred: tuple[tuple[str, str], ...] = RUNTIMES) -> tuple[str, Any]:
    """Import the first TFLite runtime that works; return ``(label, Interpreter class)``.

    Raises :class:`InferError` naming every candidate and why it failed. ``tflite_runtime``
    with numpy 2 imports but fails when an interpreter is built; :class:`Detector` reports that.
    """
    reasons = []
    for label, module in preferred:
        try:
            mod = importlib.import_module(module)
            return label, mod.Interpreter
        except Exception as exc:  # ImportError, or a broken binary wheel
            reasons.append(f"{label}: {type(exc).__name__}: {exc}")
    raise InferError("no TFLite runtime: " + "; ".join(reasons))


def read_labels(path: str | Path) -> list[str]:
    """One label per line, line number = class id (``coco_labels.txt`` layout: 0 = person)."""
    text = Path(path).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines()]


class Detector:
    """An SSD-style detection model (boxes, classes, scores, count) on one interpreter.

    ``detect(rgb)`` takes an ``(H, W, 3)`` uint8 RGB image already at :attr:`input_size`
    (resizing is the caller's business: it knows where the crop came from). Quantised uint8
    inputs get raw pixels; float inputs get pixels scaled to -1..1 (the SSD convention).

    Cost: one ``invoke()``, ≈8 ms with 2 threads / 14 ms with 1 thread for the 300x300
    quantised SSD MobileNet v1 on a small x86 core; ≈140 ms reported on a Pi 4.
    """

    def __init__(self, model_path: str | Path, *, threads: int = 2,
                 runtimes: tuple[tuple[str, str], ...] = RUNTIMES) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise InferError(f"model file not found: {path}")
        self.runtime, interpreter_cls = load_runtime(runtimes)
        try:
            self._interp = interpreter_cls(model_path=str(path), num_threads=int(threads))
            self._interp.allocate_tensors()
        except Exception as exc:
            raise InferError(f"{self.runtime} cannot load {path.name}: {type(exc).__name__}: {exc}") from exc
        inputs = self._interp.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
            raise InferError(f"{path.name}: expected one [1, H, W, 3] input, got "
                             f"{[list(i['shape']) for i in inputs]}")
        self._input = inputs[0]
        _, h, w, _ = (int(v) for v in self._input["shape"])
        self.input_size: tuple[int, int] = (w, h)
        self._float_input = np.dtype(self._input["dtype"]) == np.float32
        self._outputs = _pick_outputs(self._interp.get_output_details(), path.name)
        self._classes_checked = bool(self._outputs.pop("_named"))
        self.model_name = path.name
        self.last_ms = 0.0

    def describe(self) -> dict[str, object]:
        return {"runtime": self.runtime, "model": self.model_name,
                "input": list(self.input_size), "input_dtype": str(np.dtype(self._input["dtype"]))}

    def detect(self, rgb: np.ndarray, min_score: float = 0.0) -> list[Detection]:
        """Run the model on one RGB image of :attr:`input_size`; boxes relative to it."""
        w, h = self.input_size
        if rgb.shape != (h, w, 3):
            raise InferError(f"expected an image of {(h, w, 3)}, got {rgb.shape}")
        if self._float_input:
            tensor = (rgb.astype(np.float32) - 127.5) / 127.5
        else:
            tensor = rgb if rgb.dtype == np.uint8 else rgb.astype(np.uint8)
        t0 = time.perf_counter()
        self._interp.set_tensor(self._input["index"], tensor[None])
        self._interp.invoke()
        self.last_ms = (time.perf_counter() - t0) * 1000.0
        o = self._outputs
        boxes = self._interp.get_tensor(o["boxes"])[0]
        a = self._interp.get_tensor(o["classes"])[0]
        b = self._interp.get_tensor(o["scores"])[0]
        if not self._classes_checked:
            # Names did not decide: class ids are whole numbers, scores lie in 0..1.
            if _looks_like_scores(a) and not _looks_like_scores(b):
                o["classes"], o["scores"] = o["scores"], o["classes"]
                a, b = b, a
            self._classes_checked = _looks_like_scores(b)  # decided once scores show fractions
        n = boxes.shape[0]
        if "count" in o:
            n = min(n, int(self._interp.get_tensor(o["count"]).reshape(-1)[0]))
        out = []
        for i in range(n):
            score = float(b[i])
            if score < min_score:
                continue
            y0, x0, y1, x1 = (float(v) for v in boxes[i])
            out.append(Detection(int(a[i]), score, (max(0.0, x0), max(0.0, y0), min(1.0, x1), min(1.0, y1))))
        return out


def _looks_like_scores(v: np.ndarray) -> bool:
    return bool(v.size) and bool(np.all((v >= 0) & (v <= 1))) and bool(np.any(v != np.round(v)))


def _pick_outputs(details: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Map ``boxes``/``classes``/``scores``/``count`` to tensor indices by name, then shape."""
    boxes = [d for d in details if len(d["shape"]) == 3 and d["shape"][-1] == 4]
    vectors = [d for d in details if len(d["shape"]) == 2]
    counts = [d for d in details if int(np.prod(d["shape"])) == 1]
    if len(boxes) != 1 or len(vectors) != 2:
        raise InferError(f"{name}: not an SSD-style detector (outputs "
                         f"{[(d['name'], list(d['shape'])) for d in details]})")
    out: dict[str, Any] = {"boxes": boxes[0]["index"]}
    if counts:
        out["count"] = counts[0]["index"]
    by_word = {}
    for d in vectors:
        n = d["name"].lower()
        if "class" in n:
            by_word["classes"] = d["index"]
        elif "score" in n:
            by_word["scores"] = d["index"]
    if len(by_word) == 2:
        out.update(by_word, _named=True)
        return out
    suffix = {d["name"].rsplit(":", 1)[-1]: d for d in vectors}
    if details[0]["name"].startswith("TFLite_Detection_PostProcess") and {"1", "2"} <= set(suffix):
        # TF1 object-detection export: :1 classes, :2 scores (documented layout).
        out.update(classes=suffix["1"]["index"], scores=suffix["2"]["index"], _named=True)
        return out
    # Unknown naming: guess by position, verified by values on the first detect().
    out.update(classes=vectors[0]["index"], scores=vectors[1]["index"], _named=False)
    return out
