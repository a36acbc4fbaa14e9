"""Capacity planning: how many days of continuous footage fit on a card, and what would fit 30.

Arithmetic, stated so an installer can redo it by hand:

* usable bytes = card bytes (decimal, as sold: 128G = 128e9) x (1 - filesystem overhead, 3 %)
  - system reserve (OS, logs: ``reserve``) - the free-space floor (``headroom_s`` of video);
* bytes per day = bitrate / 8 x 86,400 x container overhead (fragmented MP4: 1 %, measured);
* days = usable / bytes per day.

Rates for 30 days: the bitrate is solved directly; fps and resolution are scaled at constant
bits per pixel (H.264 at a fixed quality costs roughly proportionally to pixels/s, a
simplification that errs on the safe side for static street scenes).
Thread/cost: pure functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DAY_S = 86_400
FS_OVERHEAD = 0.03
CONTAINER_OVERHEAD = 1.01
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*$")


def parse_size(text: str) -> float:
    """``"128G"`` → 128e9, ``"1.2M"`` → 1.2e6, ``"64GiB"`` → 64 x 2**30; plain numbers as is."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (expected e.g. 128G, 1.2M, 500k)")
    num, unit, binary = float(m.group(1)), m.group(2).upper(), bool(m.group(3))
    power = " KMGT".index(unit) if unit else 0
    return num * ((1024 if binary else 1000) ** power)


def parse_resolution(text: str) -> tuple[int, int]:
    m = re.match(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$", text)
    if not m:
        raise ValueError(f"not a resolution: {text!r} (expected WIDTHxHEIGHT)")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class Plan:
    card_bytes: float
    usable_bytes: float
    bitrate_bps: float
    width: int
    height: int
    fps: float
    days: float
    target_days: float
    bitrate_for_target_bps: float
    fps_for_target: float
    resolution_for_target: tuple[int, int]

    def lines(self) -> list[str]:
        ok = self.days >= self.target_days
        out = [
            f"card: {self.card_bytes / 1e9:.1f} GB, usable for footage: {self.usable_bytes / 1e9:.1f} GB",
            f"stream: {self.width}x{self.height} @ {self.fps:g} fps, {self.bitrate_bps / 1e6:.3g} Mbit/s",
            f"days of continuous footage: {self.days:.1f}"
            + ("" if ok else f"  (SHORT of the {self.target_days:g}-day target)"),
            f"for {self.target_days:g} days: bitrate <= {self.bitrate_for_target_bps / 1e6:.3g} Mbit/s",
            f"  or, at the same quality, fps <= {self.fps_for_target:.1f}",
            f"  or resolution <= {self.resolution_for_target[0]}x{self.resolution_for_target[1]}",
        ]
        return out


def plan(card_bytes: float, bitrate_bps: float, width: int, height: int, fps: float, *,
         target_days: float = 30.0, reserve_bytes: float = 2e9, headroom_s: float = 3600.0) -> Plan:
    if card_bytes <= 0 or bitrate_bps <= 0 or fps <= 0 or width <= 0 or height <= 0:
        raise ValueError("card, bitrate, fps and resolution must be positive")
    headroom = bitrate_bps / 8 * headroom_s * CONTAINER_OVERHEAD
    usable = max(0.0, card_bytes * (1 - FS_OVERHEAD) - reserve_bytes - headroom)
    per_day = bitrate_bps / 8 * DAY_S * CONTAINER_OVERHEAD
    days = usable / per_day
    # bitrate b such that usable(b) / per_day(b) = target (headroom depends on b too)
    k = CONTAINER_OVERHEAD / 8
    room = card_bytes * (1 - FS_OVERHEAD) - reserve_bytes
    b_target = max(0.0, room / (k * (target_days * DAY_S + headroom_s)))
    scale = min(1.0, b_target / bitrate_bps)
    fps_t = fps * scale
    # keep the aspect ratio, round down to even sizes
    s = math.sqrt(scale)
    w_t, h_t = max(16, int(width * s) // 2 * 2), max(16, int(height * s) // 2 * 2)
    return Plan(card_bytes, usable, bitrate_bps, width, height, fps, days, target_days,
                b_target, fps_t, (w_t, h_t))
