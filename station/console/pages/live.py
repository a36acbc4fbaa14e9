"""Live wall: a grid of every pole's sub-stream through the media relay; click for the main.

The relay (issue 11) serves one browser page per pole; the console embeds it. Every opening
of a live view is audited (it is footage).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from station.console import auth
from station.console.render import render

router = APIRouter()


def stream_url(template: str, node: str, stream: str) -> str:
    return template.replace("{node}", quote(node, safe="")).replace("{stream}", stream)


@router.get("/live", response_class=HTMLResponse)
def wall(request: Request) -> HTMLResponse:
    u = auth.need(request, "live")
    c = auth.console(request)
    nodes = c.live.node_ids()
    auth.audit_act(request, u, "view:live-wall", ",".join(nodes)[:256])
    tiles = [(n, stream_url(c.live_url, n, "sub") if c.live_url else "") for n in nodes]
    return render(request, "live.html", {"tiles": tiles, "configured": bool(c.live_url)})


@router.get("/live/{node}", response_class=HTMLResponse)
def one(request: Request, node: str) -> HTMLResponse:
    u = auth.need(request, "live")
    c = auth.console(request)
    if node not in c.live.node_ids():
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    auth.audit_act(request, u, "view:live", f"{node} main")
    url = stream_url(c.live_url, node, "main") if c.live_url else ""
    return render(request, "live_one.html", {"node": node, "configured": bool(c.live_url), "url": url})
