"""Rendering a page: the Jinja2 templates with the language, the user, the CSRF token, the
ward's clock and the navigation the user's role may see."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from station.console import auth
from station.console.context import Console
from station.console.i18n import LANGS, pick_lang, translate

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

NAV = (("/fleet", "Fleet", "fleet"), ("/alerts", "Alerts", "alerts"), ("/live", "Live wall", "live"),
       ("/search", "Search", "search"), ("/evidence", "Evidence", "evidence"),
       ("/admin/users", "Users", "users"),
       ("/admin/audit", "Audit log", "audit"))


def lang_of(request: Request) -> str:
    return pick_lang(request.session.get("lang"))


def translator(request: Request) -> Callable[..., str]:
    """``t(text, **kw)`` in the user's language (the templates' ``t``; a page's own messages)."""
    lang = lang_of(request)

    def t(text: str, **kw: object) -> str:
        return translate(lang, text, **kw)
    return t


def render(request: Request, name: str, ctx: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    c: Console = request.app.state.console
    lang = lang_of(request)
    user = auth.current_user(request)
    t = translator(request)
    base = {"request": request, "user": user, "lang": lang, "langs": LANGS, "t": t,
            "csrf": auth.csrf_token(request), "ward": c.ward, "path": request.url.path,
            "nav": [(href, label) for href, label, perm in NAV if user is not None and user.may(perm)]}
    return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status_code)
