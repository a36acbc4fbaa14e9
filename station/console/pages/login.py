"""Log-in, log-out and the language switch (the forms of ``auth``)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from station.console import audit, auth, ratelimit
from station.console.i18n import LANGS
from station.console.render import render
from station.console.users import authenticate, end_sessions

router = APIRouter()


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": auth.safe_next(next), "error": ""})


@router.post("/login")
async def login(request: Request, username: str = Form(""), password: str = Form(""),
                next: str = Form("/")) -> Response:
    c = auth.console(request)
    await auth.check_csrf(request)
    username = username.strip().lower()[:64]
    addr = auth.address(request)
    now = c.clock.utc()
    wait = ratelimit.blocked_for(c.engine, username, addr, now)
    if wait > 0:
        audit.record(c.engine, now, username, "", "login", "", False, addr, "rate-limited")
        return render(request, "login.html", {"next": auth.safe_next(next), "error_key":
                      "Too many wrong passwords. Try again in {s} s.", "wait_s": int(wait) + 1},
                      status_code=429)
    user = authenticate(c.engine, username, password)
    if user is None:
        ratelimit.record_failure(c.engine, username, addr, now)
        audit.record(c.engine, now, username, "", "login", "", False, addr, "wrong password")
        return render(request, "login.html", {"next": auth.safe_next(next),
                      "error_key": "Wrong user name or password."}, status_code=401)
    ratelimit.clear(c.engine, username)
    lang = request.session.get("lang")
    request.session.clear()
    request.session.update({"uid": user.id, "epoch": user.session_epoch,
                            "csrf": secrets.token_urlsafe(24), **({"lang": lang} if lang else {})})
    audit.record(c.engine, now, user.username, user.role, "login", "", True, addr)
    return RedirectResponse(auth.safe_next(next), status_code=303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await auth.check_csrf(request)
    u = auth.current_user(request)
    if u is not None:
        auth.audit_act(request, u, "logout", "")
        end_sessions(auth.console(request).engine, u.id)  # a copied cookie stops working too
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang
    return RedirectResponse("/login", status_code=303)


@router.post("/lang")
async def set_lang(request: Request, lang: str = Form("vi"), back: str = Form("/fleet")) -> Response:
    await auth.check_csrf(request)
    if lang in LANGS:
        request.session["lang"] = lang
    return RedirectResponse(auth.safe_next(back), status_code=303)
