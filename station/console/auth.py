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

from fastapi import Request
from fastapi.responses import RedirectResponse

from station.console import audit
from station.console.context import Console
from station.console.users import User, get_user_by_id


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


def still_allowed(request: Request, user: User, permission: str) -> bool:
    """For a response that lasts (the alert feed): whether the session that opened it may still
    have it — the account active, not logged out since (its epoch), its role still granting
    ``permission``. Reads the database afresh (one indexed query)."""
    u = get_user_by_id(console(request).engine, user.id)
    return (u is not None and u.active and u.session_epoch == request.session.get("epoch")
            and u.may(permission))


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


def login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse("/login?next=" + quote(request.url.path), status_code=303)
