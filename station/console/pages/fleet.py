"""Fleet: every pole on the ward plan coloured by state, and a table worst first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from station.console import auth
from station.console.plan import Pole, layout
from station.console.render import render
from station.fleet import ORDER

router = APIRouter()

#: Worst first; a pole of the inventory never heard from ("?") is a problem, ranked before
#: the poles that stopped cleanly and the healthy ones.
RANK = {**ORDER, "?": 2.5}


def data_used_mb(hb: dict[str, Any]) -> float | None:
    """Mobile data the node sent this month (live view and link counters), when it reports it."""
    for section in ("live", "link"):
        d = hb.get(section)
        if isinstance(d, dict):
            for key in ("bytes_month", "sent_bytes_month", "bytes_sent_month"):
                v = d.get(key)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    return v / 1e6
    return None


def fleet_rows(request: Request) -> list[dict[str, Any]]:
    c = auth.console(request)
    rows = {r["node"]: r for r in c.live.fleet.rows()}
    poles = {p.node_id: p for p in c.poles()}
    out = []
    for node in set(rows) | set(poles):
        r = dict(rows.get(node) or {"node": node, "state": "?", "beat_age_s": None, "fps": None,
                                    "mode": None, "retention_days": None, "temp_c": None, "faults": {},
                                    "events": 0, "last_event": None})
        p = poles.get(node)
        r["name"] = p.name if p else node
        r["address"] = p.address if p else ""
        hist = c.live.history(node)
        hb = hist[-1]["hb"] if hist else {}
        r["last_beat_utc"] = hist[-1]["utc"] if hist else None
        r["data_mb"] = data_used_mb(hb)
        dn = hb.get("daynight") if isinstance(hb.get("daynight"), dict) else {}
        r["override"] = dn.get("override")
        out.append(r)
    return sorted(out, key=lambda r: (RANK.get(r["state"], 9), r["node"]))


def plan_for(request: Request, rows: list[dict[str, Any]]):
    c = auth.console(request)
    known = {p.node_id: p for p in c.poles()}
    poles = [known.get(r["node"]) or Pole(r["node"], r["name"], None, None) for r in rows]
    return layout(poles, tile_url=c.tile_url)


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(request: Request) -> HTMLResponse:
    auth.need(request, "fleet")
    rows = fleet_rows(request)
    return render(request, "fleet.html", {"rows": rows, "plan": plan_for(request, rows),
                                          "states": {r["node"]: r["state"] for r in rows}})


@router.get("/fleet/fragment", response_class=HTMLResponse)
def fleet_fragment(request: Request) -> HTMLResponse:
    auth.need(request, "fleet")
    rows = fleet_rows(request)
    return render(request, "fleet_parts.html", {"rows": rows, "plan": plan_for(request, rows),
                                                "states": {r["node"]: r["state"] for r in rows}})
