"""Where the poles stand: read from an inventory CSV (the provisioning inventory with
``lat``, ``lon``, ``address`` and ``neighbours`` columns added by the post)."""

from __future__ import annotations

import csv
from pathlib import Path

from station.console.plan import Pole


class InventoryError(ValueError):
    pass


def _coord(text: str, lo: float, hi: float, what: str, where: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise InventoryError(f"{where}: {what} {text!r} is not a number") from None
    if not lo <= v <= hi:
        raise InventoryError(f"{where}: {what} {v} outside [{lo}, {hi}]")
    return v


def load_csv(path: Path) -> list[Pole]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from exc
    poles = []
    for i, r in enumerate(rows, start=2):
        where = f"{path.name} line {i}"
        node = (r.get("node_id") or "").strip()
        if not node:
            raise InventoryError(f"{where}: no node_id")
        poles.append(Pole(node, (r.get("name") or node).strip(),
                          _coord(r.get("lat", ""), -90, 90, "lat", where),
                          _coord(r.get("lon", ""), -180, 180, "lon", where),
                          (r.get("address") or "").strip(),
                          tuple(x for x in (r.get("neighbours") or "").replace(";", " ").split() if x)))
    return poles
