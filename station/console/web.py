"""The console's app factory: templates, static assets, sessions, errors, security headers.

Pages live one module each in ``pages/``; this module wires them to one :class:`Console`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from station.console import audit, auth
from station.console.context import Console
from station.console.pages import admin, alerts, evidence, fleet, live, login, nodes, search, trace
from station.console.render import HERE, render


def create_app(console: Console) -> FastAPI:
    app = FastAPI(title="camnode console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = console
    app.add_middleware(SessionMiddleware, secret_key=console.secret_key, session_cookie="camnode_console",
                       max_age=12 * 3600, same_site="strict", https_only=console.https_only)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for r in (login.router, fleet.router, alerts.router, nodes.router, admin.router, live.router,
              search.router, trace.router, evidence.router):
        app.include_router(r)

    tile_origin = ""
    if console.tile_url:
        u = urlsplit(console.tile_url)
        tile_origin = f" {u.scheme}://{u.netloc}"
    media_origin = ""
    if console.live_url:
        u = urlsplit(console.live_url)
        media_origin = f" {u.scheme}://{u.netloc}" if u.netloc else ""
    csp = ("default-src 'self'; img-src 'self' data:" + tile_origin + "; style-src 'self'; "
           "script-src 'self'; frame-src 'self'" + media_origin + "; media-src 'self' blob:" + media_origin
           + "; connect-src 'self'" + media_origin + "; form-action 'self'; frame-ancestors 'none'; "
           "base-uri 'none'")

    @app.middleware("http")
    async def headers(request: Request, call_next):
        resp = await call_next(request)
        resp.headers.setdefault("Content-Security-Policy", csp)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.exception_handler(auth.LoginRequired)
    async def _login(request: Request, exc: auth.LoginRequired) -> Response:
        if request.url.path.endswith("/stream") or request.headers.get("accept") == "application/json":
            return Response("log in first", status_code=401)
        return auth.login_redirect(request)

    @app.exception_handler(auth.Refused)
    async def _refused(request: Request, exc: auth.Refused) -> Response:
        auth.audit_act(request, exc.user, f"refused:{exc.permission}", exc.target, allowed=False)
        return render(request, "refused.html", {"role": exc.user.role}, status_code=403)

    @app.exception_handler(auth.BadCsrf)
    async def _csrf(request: Request, exc: auth.BadCsrf) -> Response:
        u = auth.current_user(request)
        audit.record(console.engine, console.clock.utc(), u.username if u else "", u.role if u else "",
                     "csrf", request.url.path, False, auth.address(request), "missing or forged token")
        return render(request, "error.html", {"title": "Bad request",
                                              "message": "The form expired or was forged. Please try again."},
                      status_code=403)

    @app.exception_handler(404)
    async def _missing(request: Request, exc: Exception) -> Response:
        return render(request, "error.html", {"title": "Not found", "message": ""}, status_code=404)

    @app.get("/")
    def home(request: Request) -> Response:
        u = auth.current_user(request)
        if u is None:
            return auth.login_redirect(request)
        return RedirectResponse("/alerts" if u.may("alerts") else "/fleet", status_code=303)

    return app
