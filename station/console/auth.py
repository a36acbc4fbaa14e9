"""Log-in, sessions, roles and CSRF.

Sessions are Starlette's signed cookie (``itsdangerous``) holding the user id, the user's
session epoch (a password change or a disabled account ends every older session) and a
CSRF token. Every state-changing request (all POSTs, the log-in form included) must carry that
token (form field ``csrf`` or header ``X-CSRF-Token``); a missing or wrong token is refused and
audited. Wrong passwords are rate-limited per user name and per address (``ratelimit``).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from station.console import audit, ratelimit
from station.console.context import Console
from station.console.users import User, authenticate, get_user_by_id

router = APIRouter()


class LoginRequired(Exception):
    pass


class Refused(Exception):
    """The user's role may not do this (rendered as 403 and audited)."""

    def __init__(self, user: User, permission: str, target: str) -> None:
        super().__init__(permission)
        self.user, self.permission, self.target = user, permission, target


class BadCsrf(Exception):
    pass


def console(request: Request) -> Console:
    return request.app.state.console


def address(request: Request) -> str:
    return request.client.host if request.client else ""


def csrf_token(request: Request) -> str:
    tok = request.session.get("csrf")
    if not tok:
        tok = request.session["csrf"] = secrets.token_urlsafe(24)
    return tok


def current_user(request: Request) -> User | None:
    uid = request.session.get("uid")
    if not isinstance(uid, int):
        return None
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    u = get_user_by_id(console(request).engine, uid)
    if u is None or not u.active or u.session_epoch != request.session.get("epoch"):
        request.session.pop("uid", None)
        return None
    request.state.user = u
    return u


def need(request: Request, permission: str, target: str = "") -> User:
    """The logged-in user if their role grants ``permission``; else log-in or a refusal."""
    u = current_user(request)
    if u is None:
        raise LoginRequired()
    if not u.may(permission):
        raise Refused(u, permission, target or request.url.path)
    return u


def audit_act(request: Request, user: User, action: str, target: str, allowed: bool = True,
              detail: str = "") -> None:
    c = console(request)
    audit.record(c.engine, c.clock.utc(), user.username, user.role, action, target, allowed,
                 address(request), detail)


async def check_csrf(request: Request) -> None:
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        v = form.get("csrf")
        sent = v if isinstance(v, str) else ""
    good = request.session.get("csrf") or ""
    if not good or not hmac.compare_digest(str(sent).encode(), str(good).encode()):
        raise BadCsrf()


def safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme) may follow a log-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    from station.console.web import render

    return render(request, "login.html", {"next": safe_next(next), "error": ""})


@router.post("/login")
async def login(request: Request, username: str = Form(""), password: str = Form(""),
                next: str = Form("/")) -> Response:
    from station.console.web import render

    c = console(request)
    await check_csrf(request)
    username = username.strip().lower()[:64]
    addr = address(request)
    now = c.clock.utc()
    wait = ratelimit.blocked_for(c.engine, username, addr, now)
    if wait > 0:
        audit.record(c.engine, now, username, "", "login", "", False, addr, "rate-limited")
        return render(request, "login.html", {"next": safe_next(next), "error_key":
                      "Too many wrong passwords. Try again in {s} s.", "wait_s": int(wait) + 1},
                      status_code=429)
    user = authenticate(c.engine, username, password)
    if user is None:
        ratelimit.record_failure(c.engine, username, addr, now)
        audit.record(c.engine, now, username, "", "login", "", False, addr, "wrong password")
        return render(request, "login.html", {"next": safe_next(next),
                      "error_key": "Wrong user name or password."}, status_code=401)
    ratelimit.clear(c.engine, username)
    lang = request.session.get("lang")
    request.session.clear()
    request.session.update({"uid": user.id, "epoch": user.session_epoch,
                            "csrf": secrets.token_urlsafe(24), **({"lang": lang} if lang else {})})
    audit.record(c.engine, now, user.username, user.role, "login", "", True, addr)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await check_csrf(request)
    u = current_user(request)
    if u is not None:
        audit_act(request, u, "logout", "")
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang
    return RedirectResponse("/login", status_code=303)


@router.post("/lang")
async def set_lang(request: Request, lang: str = Form("vi"), back: str = Form("/fleet")) -> Response:
    from station.console.i18n import LANGS

    await check_csrf(request)
    if lang in LANGS:
        request.session["lang"] = lang
    return RedirectResponse(safe_next(back), status_code=303)


def login_redirect(request: Request) -> Response:
    return RedirectResponse("/login?next=" + quote(request.url.path), status_code=303)
