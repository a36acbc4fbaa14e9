"""The console in ``make run`` (``camnode demo``): a subprocess on 127.0.0.1:8080 with one demo
user per role (fresh passwords each run, printed once to the terminal of whoever ran the demo)
and a one-pole inventory placing the demo node in Hoàn Kiếm."""

from __future__ import annotations

import secrets
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

DEMO_USERS = (("canbo", "operator", "Cán bộ trực ban"), ("kythuat", "technician", "Kỹ thuật viên"),
              ("quantri", "admin", "Quản trị"))
INVENTORY = ("node_id,name,lat,lon,address,neighbours\n"
             "demo-node,Cột 1 — Hàng Bạc,21.03405,105.85235,\"12 Hàng Bạc, Hoàn Kiếm, Hà Nội\",\n")


def demo_users(db_url: str) -> list[tuple[str, str, str]]:
    """(user, password, role) of the demo accounts, created or given new passwords."""
    from station.console.run import open_db
    from station.console.users import create_user, get_user, set_password

    engine = open_db(db_url)
    out = []
    for name, role, display in DEMO_USERS:
        pw = secrets.token_urlsafe(9)
        if get_user(engine, name) is None:
            create_user(engine, name, pw, role, datetime.now(UTC), display)
        else:
            set_password(engine, name, pw)
        out.append((name, pw, role))
    engine.dispose()
    return out


def start(broker_port: int, storage: Path, listen: str = "127.0.0.1:8080", db_url: str = "",
          live_url: str = "") -> subprocess.Popen:
    storage = storage.resolve()
    db_url = db_url or f"sqlite:///{storage / 'station.db'}"
    inv = storage / "inventory.csv"
    if not inv.exists():
        inv.write_text(INVENTORY, encoding="utf-8")
    users = demo_users(db_url)
    log = (storage / "console.log").open("ab")
    args = [sys.executable, "-m", "station.cli", "console", "--db", db_url, "--port", str(broker_port),
            "--listen", listen, "--inventory", str(inv), "--secret-file", str(storage / "console.secret")]
    if live_url:
        args += ["--live-url", live_url]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"demo: web console on http://{listen}/ (log in as "
          + ", ".join(f"{u} / {p} ({r})" for u, p, r in users) + ")", flush=True)
    print(f"demo: console log in {storage / 'console.log'}", flush=True)
    return proc
