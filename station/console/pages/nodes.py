"""Node page: heartbeat history charts, diagnostics, IR override with expiry, legal hold.

Every command sent from here is audited (who, which node, what, the node's answer).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from station.connect import StationError
from station.console import auth
from station.console.charts import line_chart
from station.console.i18n import ascii_fold
from station.console.render import render
from station.fleet import number as num

router = APIRouter()

#: the longest name and owner a node accepts for a legal hold (node.record.holds)
HOLD_NAME_MAX = HOLD_OWNER_MAX = 64


def hold_name(asked: str, username: str) -> str:
    """A legal hold's name as the node takes it (ASCII letters, digits, ' ', '-', '_', '.', ':';
    64 at most): Vietnamese without its marks, anything else dropped; the user's default."""
    kept = "".join(ch for ch in ascii_fold(asked) if ch.isalnum() or ch in "-_ .:")
    return kept.strip(" -_.:")[:HOLD_NAME_MAX].strip() or f"hold-{username}"[:HOLD_NAME_MAX]


def hold_owner(display_name: str, username: str) -> str:
    """Who placed the hold, in the node's 64 characters: the display name shortened if need be,
    the user name always whole."""
    who = f"({username})"
    room = HOLD_OWNER_MAX - len(who) - 1
    if room <= 0 or not display_name.strip():
        return who[:HOLD_OWNER_MAX]
    return f"{display_name[:room].rstrip()} {who}"

#: hours of archived heartbeat history the node page charts
HISTORY_H = 6

CHARTS = (
    ("Temperature (°C)", "°C", lambda hb: max((v for v in map(num, (hb.get("temperatures_c") or {}).values())
                                               if v is not None), default=None)
     if isinstance(hb.get("temperatures_c"), dict) else None),
    ("CPU load", "", lambda hb: num((hb.get("cpu_load") or [None])[0]) if isinstance(hb.get("cpu_load"), list)
     else None),
    ("Disk free (MB)", "MB", lambda hb: num(hb.get("disk_free_mb"))),
    ("Frames per second", "fps", lambda hb: num(hb.get("fps_out"))),
    ("Link connections", "", lambda hb: num((hb.get("link") or {}).get("connects"))
     if isinstance(hb.get("link"), dict) else None),
)


def _known(request: Request, node: str) -> bool:
    c = auth.console(request)
    return node in c.live.node_ids() or any(p.node_id == node for p in c.poles())


def _page(request: Request, node: str, result: dict[str, Any] | None = None, status_code: int = 200):
    c = auth.console(request)
    hist = c.live.history(node)
    if c.archive is not None:
        from station.console.archive_view import merge_history

        hist = merge_history(c.archive.history(node, c.clock.utc() - timedelta(hours=HISTORY_H)), hist)
    charts = [line_chart(title, unit, [(p["utc"], f(p["hb"])) for p in hist], c.ward.fmt)
              for title, unit, f in CHARTS]
    row = next((r for r in c.live.fleet.rows() if r["node"] == node), None)
    hb = hist[-1]["hb"] if hist else {}
    dn = hb.get("daynight") if isinstance(hb.get("daynight"), dict) else {}
    until = None
    if dn.get("override") and num(dn.get("override_left_s")):
        until = c.ward.fmt(hist[-1]["utc"] + timedelta(seconds=float(dn["override_left_s"])))
    pole = next((p for p in c.poles() if p.node_id == node), None)
    now_local = c.ward.local(c.clock.utc())
    return render(request, "node.html", {
        "node": node, "pole": pole, "row": row, "hb": hb, "charts": charts, "dn": dn,
        "override_until": until, "result": result,
        "hold_from": (now_local - timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M"),
        "hold_to": now_local.strftime("%Y-%m-%dT%H:%M")}, status_code=status_code)


@router.get("/nodes/{node}", response_class=HTMLResponse)
def node_page(request: Request, node: str) -> HTMLResponse:
    auth.need(request, "fleet")
    if not _known(request, node):
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    return _page(request, node)


def _send(request: Request, node: str, name: str, args: dict[str, Any], user) -> dict[str, Any]:
    c = auth.console(request)
    try:
        reply = c.command(node, name, args)
        outcome = "ok" if reply.get("ok") else f"refused: {reply.get('error', '?')}"
        result = {"name": name, "ok": bool(reply.get("ok")), "reply": reply,
                  "text": json.dumps(reply, indent=2, ensure_ascii=False, default=str)[:20000]}
    except (StationError, TimeoutError, OSError) as exc:
        outcome = f"no reply: {exc}"
        result = {"name": name, "ok": False, "reply": None, "text": str(exc)}
    auth.audit_act(request, user, f"cmd:{name}", node, detail=f"{json.dumps(args)} → {outcome}"[:2000])
    return result


@router.post("/nodes/{node}/diag", response_class=HTMLResponse)
async def diag(request: Request, node: str) -> HTMLResponse:
    u = auth.need(request, "diagnostics")
    await auth.check_csrf(request)
    if not _known(request, node):
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    from starlette.concurrency import run_in_threadpool

    result = await run_in_threadpool(_send, request, node, "diag", {}, u)
    return _page(request, node, result)


@router.post("/nodes/{node}/restart", response_class=HTMLResponse)
async def restart(request: Request, node: str, reason: str = Form("")) -> HTMLResponse:
    u = auth.need(request, "restart")
    await auth.check_csrf(request)
    if not _known(request, node):
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    from starlette.concurrency import run_in_threadpool

    args = {"reason": f"{u.username}: {reason.strip()[:150]}"}
    return _page(request, node, await run_in_threadpool(_send, request, node, "restart", args, u))


@router.post("/nodes/{node}/ir", response_class=HTMLResponse)
async def ir(request: Request, node: str, mode: str = Form(...), minutes: str = Form("30")) -> HTMLResponse:
    u = auth.need(request, "ir")
    await auth.check_csrf(request)
    if not _known(request, node):
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    if mode not in ("night", "day", "auto"):
        return _page(request, node, {"name": "ir", "ok": False, "text": "mode: night, day or auto"}, 400)
    args: dict[str, Any] = {"mode": mode}
    if mode != "auto":
        try:
            m = float(minutes)
        except ValueError:
            m = -1
        if not 0 < m <= 1440:
            return _page(request, node, {"name": "ir", "ok": False,
                                         "text": "minutes: more than 0, at most 1440"}, 400)
        args["minutes"] = m
    from starlette.concurrency import run_in_threadpool

    return _page(request, node, await run_in_threadpool(_send, request, node, "ir", args, u))


@router.post("/nodes/{node}/holds", response_class=HTMLResponse)
async def holds(request: Request, node: str) -> HTMLResponse:
    u = auth.need(request, "hold")
    await auth.check_csrf(request)
    if not _known(request, node):
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    from starlette.concurrency import run_in_threadpool

    return _page(request, node, await run_in_threadpool(_send, request, node, "holds", {}, u))


@router.post("/nodes/{node}/hold", response_class=HTMLResponse)
async def hold(request: Request, node: str, start: str = Form(""), end: str = Form(""),
               name: str = Form(""), days: str = Form("30")) -> HTMLResponse:
    u = auth.need(request, "hold")
    await auth.check_csrf(request)
    if not _known(request, node):
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    c = auth.console(request)
    s, e = c.ward.parse_local(start), c.ward.parse_local(end)
    if s is None or e is None or e <= s:
        return _page(request, node, {"name": "hold", "ok": False,
                                     "text": "give a start and a later end"}, 400)
    try:
        keep = int(days)
    except ValueError:
        keep = 0
    if not 1 <= keep <= 365:
        return _page(request, node, {"name": "hold", "ok": False, "text": "days: 1 to 365"}, 400)
    args = {"start": s.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": e.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "name": hold_name(name, u.username), "owner": hold_owner(u.display_name, u.username),
            "days": keep}
    from starlette.concurrency import run_in_threadpool

    return _page(request, node, await run_in_threadpool(_send, request, node, "hold", args, u))
