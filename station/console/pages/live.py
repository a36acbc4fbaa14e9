"""Live wall: every online pole's sub-stream through the media relay in a grid; click one for
its main stream.

Opening the wall asks each pole for a live session (``cmd/live`` ``{"stream": "sub",
"minutes": N}``, the live-view contract) — the pole pushes only while someone watches, and
stops by itself when the minutes are up; the relay's player page (issue 11) is embedded per
pole. A pole that refuses (data cap, busy) shows its reason. Every opening is audited.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from station.connect import StationError
from station.console import auth
from station.console.render import render
from station.live.session import page_url, token_expiry

router = APIRouter()

#: minutes a live session lasts before the pole stops pushing by itself (a reload renews it)
LIVE_MINUTES = 10
#: the live pages reload themselves before their sessions (and viewer tokens) end: new ones —
#: but only so many times (an hour), so that a tab left open does not keep poles streaming
RELOAD_S = LIVE_MINUTES * 60 - 30
MAX_RENEWALS = 5


def renewal(request: Request) -> dict[str, object]:
    """The page's reload: after ``RELOAD_S`` with the next renewal's number, while any remain."""
    try:
        done = max(0, int(request.query_params.get("renew", "0")))
    except ValueError:
        done = 0
    if done >= MAX_RENEWALS:
        return {"renewals_left": 0}
    return {"refresh_s": RELOAD_S, "refresh_url": f"{request.url.path}?renew={done + 1}",
            "renewals_left": MAX_RENEWALS - done}
WATCHABLE = ("OK", "FAULT")


def stream_url(c, node: str, stream: str) -> str:
    """The relay's player page of one stream, with a viewer token good for the live session the
    console asks for (in the fragment, which the browser never sends to the page server). Only
    called after ``auth.need(request, "live")``."""
    url = c.live_url.replace("{node}", quote(node, safe="")).replace("{stream}", stream)
    if not c.live_secret:
        return url
    return page_url(url, c.live_secret, token_expiry(LIVE_MINUTES, c.clock.utc().timestamp()))


def _start(c, node: str, stream: str) -> str:
    """'' when the pole started pushing, else its reason."""
    try:
        reply = c.command(node, "live", {"stream": stream, "minutes": LIVE_MINUTES})
    except (StationError, TimeoutError, OSError) as exc:
        return str(exc)
    return "" if reply.get("ok") else str(reply.get("error") or "refused")


@router.get("/live", response_class=HTMLResponse)
async def wall(request: Request) -> HTMLResponse:
    u = auth.need(request, "live")
    c = auth.console(request)
    nodes = [r["node"] for r in c.live.fleet.rows() if r["state"] in WATCHABLE]
    errors: dict[str, str] = {}
    if c.live_url and nodes:
        def start_all() -> dict[str, str]:
            with ThreadPoolExecutor(max_workers=min(8, len(nodes)), thread_name_prefix="live-start") as ex:
                return dict(zip(nodes, ex.map(lambda n: _start(c, n, "sub"), nodes), strict=True))

        errors = await run_in_threadpool(start_all)
    auth.audit_act(request, u, "view:live-wall", ",".join(nodes)[:256],
                   detail="; ".join(f"{n}: {e}" for n, e in errors.items() if e)[:2000])
    tiles = [(n, stream_url(c, n, "sub") if c.live_url and not errors.get(n) else "",
              errors.get(n, "")) for n in nodes]
    return render(request, "live.html", {"tiles": tiles, "configured": bool(c.live_url),
                                         **renewal(request)})


@router.get("/live/{node}", response_class=HTMLResponse)
async def one(request: Request, node: str) -> HTMLResponse:
    u = auth.need(request, "live")
    c = auth.console(request)
    if node not in c.live.node_ids():
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    error = await run_in_threadpool(_start, c, node, "main") if c.live_url else ""
    auth.audit_act(request, u, "view:live", f"{node} main", detail=error[:2000])
    url = stream_url(c, node, "main") if c.live_url and not error else ""
    return render(request, "live_one.html", {"node": node, "configured": bool(c.live_url), "url": url,
                                             "error": error, **renewal(request)})
