"""Capacity planning: how many days of continuous footage fit on a card, and what would fit 30.

Arithmetic, stated so an installer can redo it by hand:

* usable bytes = card bytes (decimal, as sold: 128G = 128e9) x (1 - filesystem overhead, 3 %)
  - system reserve (OS, logs: ``reserve``) - the free-space floor (``headroom_s`` of video);
* bytes per day = bitrate / 8 x 86,400 x container overhead (fragmented MP4: 1 %, measured);
* days = usable / bytes per day.

Rates for 30 days: the bitrate is solved directly; fps and resolution are scaled at constant
bits per pixel (H.264 at a fixed quality costs roughly proportionally to pixels/s, a
simplification that errs on the safe side for static street scenes).

Quality is stated as bits per pixel (bit/s ÷ (width x height x fps)); :data:`QUALITY` names the
levels measured by ``bench/bench_budget.py`` on the shared clips (docs/recording.md has the
table). Every size and rate needs its unit: ``128`` is refused (bytes? GB?), ``128G`` is not.
Thread/cost: pure functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DAY_S = 86_400
FS_OVERHEAD = 0.03
CONTAINER_OVERHEAD = 1.01
#: Card sizes as sold, for "which card do I need".
CARD_SIZES_GB = (16, 32, 64, 128, 256, 512, 1024, 2048)
#: Named quality levels as bits per pixel (see docs/recording.md for the SSIM/PSNR they give
#: on the shared day and night clips with libx264, measured by bench/bench_budget.py).
QUALITY = {"low": 0.01, "standard": 0.017, "high": 0.045}
#: Plausible ranges: outside them the input is a unit mistake, not a plan.
CARD_RANGE = (1e9, 1e14)
BITRATE_RANGE = (16e3, 100e6)
#: A result above this is a unit mistake somewhere (10 years of footage).
MAX_DAYS = 3650.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kKmMgGtT])(i?))?\s*(B|b|bps|bit/s|bit)?\s*$")


def parse_size(text: str, *, what: str = "size", example: str = "128G") -> float:
    """``"128G"`` → 128e9, ``"1.2M"`` → 1.2e6, ``"64GiB"`` → 64 x 2**30, ``"0"`` → 0.

    A bare non-zero number is refused: ``--card 128`` would be 128 bytes and ``--bitrate 1.2``
    1.2 bit/s, both exit-0 nonsense before units were required.
    """
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a {what}: {text!r} (expected e.g. {example})")
    num, unit, binary = float(m.group(1)), (m.group(2) or "").upper(), bool(m.group(3))
    if not unit and num != 0:
        raise ValueError(f"{what} {text!r} has no unit: write e.g. {example} "
                         "(k, M, G, T: decimal; Ki, Mi, Gi: binary)")
    power = " KMGT".index(unit) if unit else 0
    return num * ((1024 if binary else 1000) ** power)


def _in_range(value: float, rng: tuple[float, float], what: str, text: str) -> float:
    if not rng[0] <= value <= rng[1]:
        raise ValueError(f"{what} {text!r} = {value:.4g} is outside {rng[0]:.4g}..{rng[1]:.4g}: "
                         "check the unit")
    return value


def parse_card(text: str) -> float:
    """Card size in bytes (decimal as sold), 1 GB .. 100 TB."""
    return _in_range(parse_size(text, what="card size", example="128G"), CARD_RANGE,
                     "card size", text)


def parse_bitrate(text: str) -> float:
    """Bit rate in bit/s, 16 kbit/s .. 100 Mbit/s (``"400k"``, ``"1.2M"``, ``"1.2Mbps"``)."""
    return _in_range(parse_size(text, what="bitrate", example="1.2M (bit/s) or 400k"),
                     BITRATE_RANGE, "bitrate", text)


def parse_resolution(text: str) -> tuple[int, int]:
    m = re.match(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$", text)
    if not m:
        raise ValueError(f"not a resolution: {text!r} (expected WIDTHxHEIGHT)")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise ValueError(f"resolution {text!r} outside 16x16..7680x4320")
    return w, h


def bits_per_pixel(bitrate_bps: float, width: int, height: int, fps: float) -> float:
    return bitrate_bps / (width * height * fps)


def quality_name(bpp: float) -> str:
    """The highest named level ``bpp`` reaches, or ``"below low"``."""
    best = "below low"
    for name, level in sorted(QUALITY.items(), key=lambda kv: kv[1]):
        if bpp >= level * 0.999:
            best = name
    return best


def usable_bytes(card_bytes: float, bitrate_bps: float, *, reserve_bytes: float = 2e9,
                 headroom_s: float = 3600.0) -> float:
    """Bytes left for footage on a card recording at ``bitrate_bps``."""
    headroom = bitrate_bps / 8 * headroom_s * CONTAINER_OVERHEAD
    return max(0.0, card_bytes * (1 - FS_OVERHEAD) - reserve_bytes - headroom)


def bitrate_for(card_bytes: float, target_days: float, *, reserve_bytes: float = 2e9,
                headroom_s: float = 3600.0) -> float:
    """The average bit/s at which ``card_bytes`` holds exactly ``target_days`` (the headroom
    depends on the rate too: solved in closed form)."""
    room = card_bytes * (1 - FS_OVERHEAD) - reserve_bytes
    return max(0.0, room / (CONTAINER_OVERHEAD / 8 * (target_days * DAY_S + headroom_s)))


def card_for(bitrate_bps: float, target_days: float, *, reserve_bytes: float = 2e9,
             headroom_s: float = 3600.0) -> float:
    """Card bytes needed to hold ``target_days`` at ``bitrate_bps`` (inverse of bitrate_for)."""
    footage = bitrate_bps * CONTAINER_OVERHEAD / 8 * (target_days * DAY_S + headroom_s)
    return (footage + reserve_bytes) / (1 - FS_OVERHEAD)


def card_size_for(card_bytes: float) -> str:
    """The smallest card as sold that holds ``card_bytes``."""
    for gb in CARD_SIZES_GB:
        if gb * 1e9 >= card_bytes:
            return f"{gb}G"
    return f"{math.ceil(card_bytes / 1e12)}T"


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

    @property
    def bitrate_kbps(self) -> float:
        return self.bitrate_bps / 1000

    @property
    def bpp(self) -> float:
        return bits_per_pixel(self.bitrate_bps, self.width, self.height, self.fps)

    def as_dict(self) -> dict[str, object]:
        bpp_t = bits_per_pixel(self.bitrate_for_target_bps, self.width, self.height, self.fps)
        return self.__dict__ | {
            "days": round(self.days, 2), "bitrate_kbps": round(self.bitrate_kbps, 1),
            "bits_per_pixel": round(self.bpp, 4), "quality": quality_name(self.bpp),
            "bitrate_for_target_kbps": round(self.bitrate_for_target_bps / 1000, 1),
            "quality_for_target": quality_name(bpp_t),
            "meets_target": self.days >= self.target_days}

    def lines(self) -> list[str]:
        ok = self.days >= self.target_days
        bpp_t = bits_per_pixel(self.bitrate_for_target_bps, self.width, self.height, self.fps)
        return [
            f"card: {self.card_bytes / 1e9:.1f} GB, usable for footage: {self.usable_bytes / 1e9:.1f} GB",
            f"stream: {self.width}x{self.height} @ {self.fps:g} fps, {self.bitrate_bps / 1e6:.3g} Mbit/s"
            f" ({self.bpp:.3f} bit/pixel, quality {quality_name(self.bpp)})",
            f"days of continuous footage: {self.days:.1f}"
            + ("" if ok else f"  (SHORT of the {self.target_days:g}-day target)"),
            f"for {self.target_days:g} days: bitrate <= {self.bitrate_for_target_bps / 1e6:.3g} Mbit/s"
            f" ({bpp_t:.3f} bit/pixel, quality {quality_name(bpp_t)})",
            f"  or, at the same quality, fps <= {self.fps_for_target:.1f}",
            f"  or resolution <= {self.resolution_for_target[0]}x{self.resolution_for_target[1]}",
        ]


def plan(card_bytes: float, bitrate_bps: float, width: int, height: int, fps: float, *,
         target_days: float = 30.0, reserve_bytes: float = 2e9, headroom_s: float = 3600.0) -> Plan:
    if card_bytes <= 0 or bitrate_bps <= 0 or fps <= 0 or width <= 0 or height <= 0:
        raise ValueError("card, bitrate, fps and resolution must be positive")
    usable = usable_bytes(card_bytes, bitrate_bps, reserve_bytes=reserve_bytes, headroom_s=headroom_s)
    per_day = bitrate_bps / 8 * DAY_S * CONTAINER_OVERHEAD
    days = usable / per_day
    if days > MAX_DAYS:
        raise ValueError(f"{days:,.0f} days of footage: more than {MAX_DAYS / 365:.0f} years, "
                         "check the units of the card size and the bitrate")
    b_target = bitrate_for(card_bytes, target_days, reserve_bytes=reserve_bytes, headroom_s=headroom_s)
    scale = min(1.0, b_target / bitrate_bps)
    fps_t = fps * scale
    # keep the aspect ratio, round down to even sizes
    s = math.sqrt(scale)
    w_t, h_t = max(16, int(width * s) // 2 * 2), max(16, int(height * s) // 2 * 2)
    return Plan(card_bytes, usable, bitrate_bps, width, height, fps, days, target_days,
                b_target, fps_t, (w_t, h_t))
