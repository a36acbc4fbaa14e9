"""The station side of ``make run`` (``camnode-demo``): the station service (``camnode-station
serve``: archive, acknowledgements) and the web console on 127.0.0.1:8080, each a subprocess,
sharing one SQLite archive beside the demo's footage. One demo user per role (fresh passwords
each run, printed once to the terminal of whoever ran the demo) and a one-pole inventory
placing the demo node in Hoàn Kiếm."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

DEMO_USERS = (("canbo", "operator", "Cán bộ trực ban"), ("kythuat", "technician", "Kỹ thuật viên"),
              ("quantri", "admin", "Quản trị"))
INVENTORY = ("node_id,pole,lat,lon,address,neighbours\n"
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


class DemoError(RuntimeError):
    """The demo's station side did not start; the message is the one-line reason."""


def last_line(path: Path) -> str:
    """The last non-empty line of a log (what a dead process said last), else ''."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_listening(proc: subprocess.Popen, host: str, port: int, log: Path, timeout_s: float = 90.0) -> None:
    """Until ``proc`` accepts connections on host:port; :class:`DemoError` when it died first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = last_line(log) or "no output"
            raise DemoError(f"web console exited with code {proc.returncode}: {said}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise DemoError(f"web console did not answer on {host}:{port} within {timeout_s:.0f} s (see {log})")


class StationProcesses:
    """The demo's ``serve`` and ``console`` processes, stopped together (SIGTERM, then wait)."""

    def __init__(self, procs: list[subprocess.Popen], names: list[str], logs: list[Path]) -> None:
        self.procs, self.names, self.logs = procs, names, logs

    def dead(self) -> str:
        """'' while every process runs, else which one ended, with its code and last log line."""
        for p, name, log in zip(self.procs, self.names, self.logs, strict=True):
            if p.poll() is not None:
                return f"{name} exited with code {p.returncode}: {last_line(log) or 'no output'}"
        return ""

    def terminate(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()

    def wait(self, timeout: float) -> None:
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start(broker_port: int, storage: Path, listen: str = "127.0.0.1:8080", db_url: str = "",
          live_url: str = "", station_dir: str = "") -> StationProcesses:
    """Start ``serve`` and the console; print the console's URL and the demo log-ins only once it
    listens. :class:`DemoError` (both processes stopped) when it cannot start."""
    storage = storage.resolve()
    host, _, port = listen.rpartition(":")
    if not _port_free(host, int(port)):
        raise DemoError(f"web console cannot listen on {listen}: the port is in use (--console-listen)")
    db_url = db_url or f"sqlite:///{storage / 'station.db'}"
    inv = storage / "inventory.csv"
    if not inv.exists():
        inv.write_text(INVENTORY, encoding="utf-8")
    users = demo_users(db_url)  # also brings the archive's schema up before serve starts
    with (storage / "station.log").open("ab") as slog:
        serve = subprocess.Popen([sys.executable, "-m", "station.cli", "serve", "--host", "127.0.0.1",
                                  "--port", str(broker_port), "--db", db_url,
                                  "--media", str(storage / "media"), "--client-id", "camnode-station-demo"],
                                 stdout=slog, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"demo: station service archiving into {db_url}; log in {storage / 'station.log'}", flush=True)
    log = (storage / "console.log").open("ab")
    args = [sys.executable, "-m", "station.cli", "console", "--db", db_url, "--port", str(broker_port),
            "--listen", listen, "--inventory", str(inv), "--secret-file", str(storage / "console.secret"),
            "--media", str(storage / "media")]
    if live_url:  # a template without the key: the console reads it from the station directory
        args += ["--live-url", live_url] + (["--station-dir", station_dir] if station_dir else [])
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    both = StationProcesses([proc, serve], ["web console", "station service"],
                            [storage / "console.log", storage / "station.log"])
    try:
        wait_listening(proc, host, int(port), storage / "console.log")
    except DemoError:
        both.terminate()
        both.wait(10)
        raise
    print(f"demo: web console on http://{listen}/ (log in as "
          + ", ".join(f"{u} / {p} ({r})" for u, p, r in users) + ")", flush=True)
    print(f"demo: console log in {storage / 'console.log'}", flush=True)
    return both
