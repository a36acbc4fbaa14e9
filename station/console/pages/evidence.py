"""Evidence: build a case from an event (clips of several poles, progress while pulling, the
verification result), then download it as one zip. Every case and every download is audited."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from station.console import auth
from station.console.render import render

router = APIRouter()


def _unavailable(request: Request) -> HTMLResponse:
    return render(request, "error.html", {"title": "Evidence", "message": "The archive is not available."},
                  status_code=503)


@router.get("/evidence", response_class=HTMLResponse)
def evidence_list(request: Request, event: str = "") -> HTMLResponse:
    auth.need(request, "evidence")
    c = auth.console(request)
    if c.archive is None or c.cases is None:
        return _unavailable(request)
    ev = c.archive.event(event[:128]) if event else None
    if event and ev is None:
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    neighbours = []
    if ev is not None:
        pole = next((p for p in c.poles() if p.node_id == ev["node"]), None)
        neighbours = list(pole.neighbours) if pole else []
    return render(request, "evidence.html", {"ev": ev, "jobs": c.cases.list(), "neighbours": neighbours})


@router.post("/evidence", response_class=HTMLResponse)
async def evidence_start(request: Request, event: str = Form(...), window_min: str = Form("5")) -> Response:
    u = auth.need(request, "evidence")
    await auth.check_csrf(request)
    c = auth.console(request)
    if c.archive is None or c.cases is None:
        return _unavailable(request)
    ev = c.archive.event(event[:128])
    if ev is None:
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    try:
        window = float(window_min)
    except ValueError:
        window = -1.0
    if not 0 < window <= 15:
        return render(request, "error.html", {"title": "Bad request", "message": "window: 1 to 15 minutes"},
                      status_code=400)
    form = await request.form()
    known = {p.node_id for p in c.poles()}
    poles = [str(p) for p in form.getlist("poles") if str(p) in known and str(p) != ev["node"]]
    job = c.cases.start(ev["id"], timedelta(minutes=window), poles, u.username)
    auth.audit_act(request, u, "evidence:build", ev["id"], detail=f"job {job.id}, ±{window:g} min, "
                   f"poles {', '.join([ev['node'], *poles])}")
    return RedirectResponse(f"/evidence/{job.id}", status_code=303)


@router.get("/evidence/{job_id}", response_class=HTMLResponse)
def evidence_job(request: Request, job_id: str) -> HTMLResponse:
    auth.need(request, "evidence")
    c = auth.console(request)
    job = c.cases.get(job_id) if c.cases is not None else None
    if job is None:
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)
    return render(request, "evidence_job.html", {"job": job, "received": job.received(),
                                                 "ahead": c.cases.ahead(job)})


@router.get("/evidence/{job_id}/download")
def evidence_download(request: Request, job_id: str) -> Response:
    u = auth.need(request, "evidence", f"case {job_id[:40]}")
    c = auth.console(request)
    job = c.cases.get(job_id) if c.cases is not None else None
    if job is None or job.state != "done" or job.archive is None or not job.archive.is_file():
        return Response("no such case archive", status_code=404, media_type="text/plain")
    auth.audit_act(request, u, "export:case", f"{job.event_id} job {job.id}",
                   detail=f"verified={job.verified}")
    return FileResponse(job.archive, media_type="application/zip", filename=f"case-{job.id}.zip")
