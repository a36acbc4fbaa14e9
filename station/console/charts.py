"""Server-rendered SVG line charts of a node's heartbeat history (no JavaScript library)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    width: int
    height: int
    path: str  # SVG path "M x y L x y ..."
    lo: float
    hi: float
    last: float | None
    t0: str
    t1: str
    points: int


def line_chart(title: str, unit: str, series: list[tuple[datetime, float | None]], fmt_time,
               width: int = 420, height: int = 120, pad: int = 6) -> Chart:
    pts = [(t, v) for t, v in series if v is not None]
    if not pts:
        return Chart(title, unit, width, height, "", 0.0, 0.0, None, "", "", 0)
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    t0, t1 = pts[0][0].timestamp(), pts[-1][0].timestamp()
    span = max(t1 - t0, 1e-9)
    cmds = []
    for i, (t, v) in enumerate(pts):
        x = pad + (t.timestamp() - t0) / span * (width - 2 * pad) if len(pts) > 1 else width / 2
        y = height - pad - (v - lo) / (hi - lo) * (height - 2 * pad)
        cmds.append(f"{'M' if i == 0 else 'L'}{x:.1f} {y:.1f}")
    return Chart(title, unit, width, height, " ".join(cmds), lo, hi, pts[-1][1],
                 fmt_time(pts[0][0], False), fmt_time(pts[-1][0], False), len(pts))

