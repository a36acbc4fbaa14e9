"""The ward plan: poles placed by their latitude/longitude on an SVG drawn by the server.

Works offline (no map tiles needed: a scale bar, a north arrow and the poles); with a tile
URL template (``https://tiles.example/{z}/{x}/{y}.png``, e.g. the post's own tile server) the
standard Web-Mercator tiles covering the poles are laid underneath.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TILE = 256


@dataclass(frozen=True)
class Pole:
    node_id: str
    name: str
    lat: float | None
    lon: float | None
    address: str = ""
    neighbours: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placed:
    pole: Pole
    x: float
    y: float


@dataclass(frozen=True)
class Plan:
    width: int
    height: int
    placed: list[Placed]
    unplaced: list[Pole]
    tiles: list[tuple[str, float, float, float]]  # url, x, y, size
    scale_m: int  # length of the scale bar in metres
    scale_px: float

    def where(self, node_id: str) -> Placed | None:
        return next((p for p in self.placed if p.pole.node_id == node_id), None)


def _world(lat: float, lon: float, z: int) -> tuple[float, float]:
    """Web-Mercator pixel coordinates at zoom ``z``."""
    s = math.sin(math.radians(max(min(lat, 85.0), -85.0)))
    n = TILE * 2 ** z
    return (lon + 180.0) / 360.0 * n, (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * n


def layout(poles: list[Pole], width: int = 900, height: int = 560, margin: int = 50,
           tile_url: str = "") -> Plan:
    """Fit every pole with a position into ``width``×``height`` (the largest zoom that fits)."""
    placed_src = [p for p in poles if p.lat is not None and p.lon is not None]
    unplaced = [p for p in poles if p.lat is None or p.lon is None]
    if not placed_src:
        return Plan(width, height, [], unplaced, [], 0, 0.0)
    z = 19
    while z > 1:
        pts = [_world(p.lat, p.lon, z) for p in placed_src]  # type: ignore[arg-type]
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        if max(xs) - min(xs) <= width - 2 * margin and max(ys) - min(ys) <= height - 2 * margin:
            break
        z -= 1
    pts = [_world(p.lat, p.lon, z) for p in placed_src]  # type: ignore[arg-type]
    cx = (min(x for x, _ in pts) + max(x for x, _ in pts)) / 2
    cy = (min(y for _, y in pts) + max(y for _, y in pts)) / 2
    ox, oy = cx - width / 2, cy - height / 2
    placed = [Placed(p, x - ox, y - oy) for p, (x, y) in zip(placed_src, pts, strict=True)]
    tiles = []
    if tile_url:
        for tx in range(int(ox // TILE), int((ox + width) // TILE) + 1):
            for ty in range(int(oy // TILE), int((oy + height) // TILE) + 1):
                if 0 <= ty < 2 ** z:
                    url = tile_url.replace("{z}", str(z)).replace("{x}", str(tx % 2 ** z)) \
                        .replace("{y}", str(ty))
                    tiles.append((url, tx * TILE - ox, ty * TILE - oy, float(TILE)))
    lat0 = sum(p.lat for p in placed_src) / len(placed_src)  # type: ignore[misc]
    m_per_px = 156543.03392 * math.cos(math.radians(lat0)) / 2 ** z
    target = m_per_px * width / 5
    nice = min((v for v in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
                if v >= target / 2), default=50000)
    return Plan(width, height, placed, unplaced, tiles, nice, nice / m_per_px)
