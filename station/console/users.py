"""People and roles: accounts with argon2id password hashes (argon2-cffi).

Roles and what each may do (``PERMISSIONS``):
  * operator   — watch (fleet, alerts, live), footage (snapshots, live video), search, evidence;
  * technician — fleet, node health, IR, diagnostics, restart — never footage or evidence;
  * admin      — users and the audit log, plus everything a technician does.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from station.archive.db import writing
from station.archive.schema import console_users as users

ROLES = ("operator", "technician", "admin")

PERMISSIONS: dict[str, frozenset[str]] = {
    "operator": frozenset({"fleet", "alerts", "footage", "search", "evidence", "live", "hold"}),
    "technician": frozenset({"fleet", "health", "ir", "diagnostics", "restart"}),
    "admin": frozenset({"fleet", "health", "ir", "diagnostics", "restart", "users", "audit"}),
}

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD = 10

_hasher = PasswordHasher()
# a hash of nothing anyone knows: verifying against it for unknown users costs the same time
_DUMMY = _hasher.hash("not a password of anyone")


class UserError(ValueError):
    """A refused account change, with a message for the person who asked."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    active: bool
    session_epoch: int

    def may(self, permission: str) -> bool:
        return self.active and permission in PERMISSIONS.get(self.role, frozenset())


def _row(r: sa.Row) -> User:
    return User(r.id, r.username, r.display_name, r.role, bool(r.active), r.session_epoch)


def check_new(username: str, password: str, role: str) -> None:
    if not USERNAME.match(username):
        raise UserError("user name: 2–32 of a-z 0-9 . _ -, starting with a letter or digit")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    check_password(password)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")


def create_user(engine: sa.Engine, username: str, password: str, role: str, now: datetime,
                display_name: str = "") -> User:
    check_new(username, password, role)
    with writing(engine) as c:
        if c.execute(sa.select(users.c.id).where(users.c.username == username)).first():
            raise UserError(f"user {username!r} exists")
        c.execute(users.insert().values(username=username, display_name=display_name or username,
                                        role=role, password_hash=_hasher.hash(password), active=True,
                                        session_epoch=0, created_utc=now))
    found = get_user(engine, username)
    assert found is not None
    return found


def get_user(engine: sa.Engine, username: str) -> User | None:
    with engine.connect() as c:
        r = c.execute(sa.select(users).where(users.c.username == username)).first()
    return _row(r) if r else None


def get_user_by_id(engine: sa.Engine, user_id: int) -> User | None:
    with engine.connect() as c:
        r = c.execute(sa.select(users).where(users.c.id == user_id)).first()
    return _row(r) if r else None


def list_users(engine: sa.Engine) -> list[User]:
    with engine.connect() as c:
        return [_row(r) for r in c.execute(sa.select(users).order_by(users.c.username))]


def authenticate(engine: sa.Engine, username: str, password: str) -> User | None:
    """The active user whose password this is, else None (same cost for unknown names)."""
    with engine.connect() as c:
        r = c.execute(sa.select(users).where(users.c.username == username)).first()
    if r is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY, password)
        return None
    try:
        _hasher.verify(r.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if not r.active:
        return None
    if _hasher.check_needs_rehash(r.password_hash):
        with writing(engine) as c:
            c.execute(users.update().where(users.c.id == r.id)
                      .values(password_hash=_hasher.hash(password)))
    return _row(r)


def set_password(engine: sa.Engine, username: str, password: str) -> None:
    check_password(password)
    with writing(engine) as c:
        n = c.execute(users.update().where(users.c.username == username).values(
            password_hash=_hasher.hash(password), session_epoch=users.c.session_epoch + 1)).rowcount
    if not n:
        raise UserError(f"no user {username!r}")


def end_sessions(engine: sa.Engine, user_id: int) -> None:
    """Log-out: every session cookie issued to this user so far stops working (server-side)."""
    with writing(engine) as c:
        c.execute(users.update().where(users.c.id == user_id).values(
            session_epoch=users.c.session_epoch + 1))


def set_active(engine: sa.Engine, username: str, active: bool) -> None:
    with writing(engine) as c:
        n = c.execute(users.update().where(users.c.username == username).values(
            active=active, session_epoch=users.c.session_epoch + 1)).rowcount
    if not n:
        raise UserError(f"no user {username!r}")
