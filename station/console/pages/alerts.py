"""Alerts: the live feed (server-sent events), newest first, with snapshots; acknowledge; filter.

Every snapshot served is footage: each request is audited (who looked at which picture).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from station.archive.db import writing
from station.archive.schema import console_acks as acks
from station.console import auth
from station.console.feed import Alert, sse
from station.console.render import render

router = APIRouter()

LABELS = ("person", "car", "motorcycle", "bicycle", "truck", "bus")
KEEPALIVE_S = 15.0
#: how often an open alert feed checks that its session may still have it (a log-out, a disabled
#: account or a changed role ends the feed within this)
RECHECK_S = 5.0


def acked(engine: sa.Engine, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    with engine.connect() as c:
        return {r.event_id: r.username for r in c.execute(
            sa.select(acks.c.event_id, acks.c.username).where(acks.c.event_id.in_(ids)))}


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, label: str = "", node: str = "") -> HTMLResponse:
    u = auth.need(request, "alerts")
    c = auth.console(request)
    label = label if label in LABELS else ""
    nodes = c.live.node_ids()
    node = node if node in nodes else ""
    items = c.live.alerts(label, node)
    snaps = {a.id for a in items if c.live.has_snapshot(a.id)}
    if c.archive is not None and len(items) < 100:  # after a console restart: the archive's too
        have = {a.id for a in items}
        for ev in c.archive.search(since=None, until=None, label=label or None, colour=None,
                                   node=node or None, limit=100):
            if ev["id"] not in have and ev.get("kind") == "object":
                if ev.get("snapshot_sha"):
                    snaps.add(ev["id"])
                items.append(Alert(id=ev["id"], node=ev["node"], label=ev.get("label") or "?",
                                   phase=ev.get("phase") or "?", score=ev.get("score"), start=ev["start"],
                                   end=ev.get("end"), snapshot=bool(ev.get("snapshot_sha")), box=None))
        items = items[:100]
    auth.audit_act(request, u, "view:alerts", f"label={label} node={node}")
    return render(request, "alerts.html", {
        "alerts": items, "acked": acked(c.engine, [a.id for a in items]),
        "snaps": snaps,
        "labels": LABELS, "label": label, "nodes": nodes, "node": node})


@router.get("/alerts/stream")
async def alerts_stream(request: Request) -> StreamingResponse:
    u = auth.need(request, "alerts")
    c = auth.console(request)
    auth.audit_act(request, u, "view:alert-feed", "")
    q = c.live.broadcaster.listen()

    async def events():
        checked = time.monotonic()
        try:
            yield "retry: 2000\n\n"
            while True:
                if time.monotonic() - checked >= RECHECK_S:  # logged out, disabled, role taken away
                    if not await run_in_threadpool(auth.still_allowed, request, u, "alerts"):
                        yield "event: ended\ndata: {}\n\n"
                        return
                    checked = time.monotonic()
                try:
                    item = await asyncio.wait_for(q.get(), min(KEEPALIVE_S, RECHECK_S))
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item.get("type") == "alert":
                    item = {**item, "local_time": c.ward.fmt(item.get("start"), False),
                            "local_date": c.ward.fmt(item.get("start"))}
                yield sse(item)
        finally:
            c.live.broadcaster.forget(q)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/snapshot/{event_id}.jpg")
def snapshot(request: Request, event_id: str) -> Response:
    u = auth.need(request, "footage", f"snapshot {event_id}")
    c = auth.console(request)
    got = c.live.snapshot(event_id)
    if got is None and c.archive is not None and len(event_id) <= 128:
        got = c.archive.snapshot(event_id)
    if got is None:
        auth.audit_act(request, u, "view:snapshot", event_id, detail="not found")
        return Response("no such snapshot", status_code=404, media_type="text/plain")
    node, jpeg = got
    auth.audit_act(request, u, "view:snapshot", f"{node}/{event_id}")
    # footage stays out of a shared police PC's browser cache (and so out of reach after log-out)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/alerts/{event_id}/ack")
async def acknowledge(request: Request, event_id: str, node: str = Form("")) -> Response:
    u = auth.need(request, "alerts")
    await auth.check_csrf(request)
    c = auth.console(request)
    if len(event_id) > 128 or not node or len(node) > 64:
        return JSONResponse({"ok": False, "error": "bad event or node"}, status_code=400)
    with writing(c.engine) as conn:
        if conn.execute(sa.select(acks.c.event_id).where(acks.c.event_id == event_id)).first() is None:
            conn.execute(acks.insert().values(event_id=event_id, node_id=node, username=u.username,
                                              at_utc=datetime.now(UTC) if c.clock is None else c.clock.utc()))
    auth.audit_act(request, u, "ack", f"{node}/{event_id}")
    c.live.broadcaster.publish({"type": "ack", "id": event_id, "by": u.username})
    if request.headers.get("x-csrf-token"):
        return JSONResponse({"ok": True, "by": u.username})
    return Response(status_code=303, headers={"Location": "/alerts"})
