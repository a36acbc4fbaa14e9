"""Admin: people (add, disable, reset a password) and the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from station.console import audit, auth
from station.console.render import render
from station.console.users import ROLES, UserError, create_user, list_users, set_active, set_password

router = APIRouter()

#: audit entries per page (older ones a click away)
AUDIT_PAGE = 100


def _users_page(request: Request, message: str = "", error: str = "", status_code: int = 200):
    c = auth.console(request)
    return render(request, "users.html", {"users": list_users(c.engine), "roles": ROLES,
                                          "message": message, "error": error}, status_code=status_code)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request) -> HTMLResponse:
    auth.need(request, "users")
    return _users_page(request)


@router.post("/admin/users", response_class=HTMLResponse)
async def add_user(request: Request, username: str = Form(""), display_name: str = Form(""),
                   role: str = Form(""), password: str = Form("")) -> HTMLResponse:
    u = auth.need(request, "users")
    await auth.check_csrf(request)
    c = auth.console(request)
    try:
        create_user(c.engine, username.strip().lower(), password, role, c.clock.utc(),
                    display_name.strip()[:128])
    except UserError as exc:
        return _users_page(request, error=str(exc), status_code=400)
    auth.audit_act(request, u, "user:add", username, detail=f"role {role}")
    return _users_page(request, message="Saved.")


@router.post("/admin/users/{username}/active", response_class=HTMLResponse)
async def user_active(request: Request, username: str, active: str = Form("0")) -> HTMLResponse:
    u = auth.need(request, "users")
    await auth.check_csrf(request)
    if username == u.username:
        return _users_page(request, error="you cannot disable yourself", status_code=400)
    try:
        set_active(auth.console(request).engine, username, active == "1")
    except UserError as exc:
        return _users_page(request, error=str(exc), status_code=404)
    auth.audit_act(request, u, "user:enable" if active == "1" else "user:disable", username)
    return _users_page(request, message="Saved.")


@router.post("/admin/users/{username}/password", response_class=HTMLResponse)
async def user_password(request: Request, username: str, password: str = Form("")) -> HTMLResponse:
    u = auth.need(request, "users")
    await auth.check_csrf(request)
    try:
        set_password(auth.console(request).engine, username, password)
    except UserError as exc:
        return _users_page(request, error=str(exc), status_code=400)
    auth.audit_act(request, u, "user:password", username)
    return _users_page(request, message="Saved.")


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(request: Request, who: str = "", action: str = "", before: int | None = None) -> HTMLResponse:
    auth.need(request, "audit")
    c = auth.console(request)
    entries = audit.recent(c.engine, AUDIT_PAGE, who[:64], action[:32], before)
    older = entries[-1].id if len(entries) == AUDIT_PAGE else None
    return render(request, "audit.html", {"entries": entries, "who": who[:64], "action": action[:32],
                                          "older": older})
