"""Trace: from one event, where the person or vehicle went — the archive's trail across the
neighbouring poles, drawn on the ward plan and as a timeline with snapshots."""

from __future__ import annotations

import math
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from station.console import auth
from station.console.plan import layout
from station.console.render import render

router = APIRouter()


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@router.get("/trace/{event_id}", response_class=HTMLResponse)
def trace_page(request: Request, event_id: str, minutes: float = 10.0) -> HTMLResponse:
    u = auth.need(request, "search")
    c = auth.console(request)
    if c.archive is None:
        return render(request, "error.html", {"title": "Trace", "message": "The archive is not available."},
                      status_code=503)
    minutes = min(max(minutes, 1.0), 60.0) if math.isfinite(minutes) else 10.0  # (nan passes min/max)
    from station.console.archive_view import TraceError

    try:
        tr = c.archive.trace(event_id[:128], minutes)
    except TraceError:
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    auth.audit_act(request, u, "trace", event_id[:128],
                   detail=f"±{minutes:g} min, {len(tr.path)} on the trail")
    poles = c.poles()
    plan = layout(poles, tile_url=c.tile_url)
    trail_pts = [(p.x, p.y) for ev in tr.path if (p := plan.where(ev["node"])) is not None]
    t0, t1 = _ts(tr.path[0]["start"]), _ts(tr.path[-1]["start"])
    span = max(t1 - t0, 1.0)
    ticks = [{"ev": ev, "x": 2 + 96 * (_ts(ev["start"]) - t0) / span} for ev in tr.path]
    on_trail = {ev["node"] for ev in tr.path}
    names = {p.node_id: p.name for p in poles}
    states = {p.node_id: ("trail" if p.node_id in on_trail else "?") for p in poles}
    return render(request, "trace.html", {
        "tr": tr, "plan": plan, "trail": " ".join(f"{x:.1f},{y:.1f}" for x, y in trail_pts),
        "ticks": ticks, "states": states, "names": names, "minutes": minutes})
