"""The console under test: the real app on a real loopback port (uvicorn in a named thread),
fed by a real broker, with users of every role; and headless Debian chromium driven by
selenium (the system browser and driver: nothing downloads one)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

PASSWORDS = {"op": "operator-pass-1", "tech": "technician-pass-1", "adm": "admin-pass-123"}
ROLES = {"op": "operator", "tech": "technician", "adm": "admin"}
SCREENS = Path(__file__).resolve().parents[2] / "var" / "screens"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    url: str
    app: object
    console: object
    bridge: object
    server: object
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.bridge.stop()


def start_console(tmp: Path, broker_port: int, db: str = "", inventory: str = "", live_url: str = "",
                  extra: dict | None = None, users: bool = True, station_dir: str = "",
                  connection: object = None) -> Running:
    """The console on ``broker_port`` (anonymous), or as ``connection`` says (a station login)."""
    import uvicorn

    from station.connect import Connection
    from station.console.run import Settings, build
    from station.console.users import create_user

    settings = Settings(db=db or f"sqlite:///{tmp / 'console.db'}",
                        connection=connection or Connection(port=broker_port),
                        secret_file=str(tmp / "console.secret"), inventory=inventory, live_url=live_url,
                        station_dir=station_dir, command_timeout_s=8.0)
    app, bridge = build(settings)
    c = app.state.console
    c.extra.update(extra or {})
    if users:
        for name, role in ROLES.items():
            create_user(c.engine, name, PASSWORDS[name], role, datetime.now(UTC), display_name={
                "op": "Nguyễn Văn An", "tech": "Trần Thị Bình", "adm": "Lê Quốc Cường"}[name])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1, access_log=False))
    th = threading.Thread(target=server.run, name="console-http", daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not th.is_alive():
            raise RuntimeError("console did not start")
        time.sleep(0.05)
    bridge.connected.wait(10)
    return Running(f"http://127.0.0.1:{port}", app, c, bridge, server, th)


def http_login(url: str, user: str, password: str | None = None) -> httpx.Client:
    """An HTTP client logged in as ``user`` (a real form post with the page's CSRF token)."""
    cl = httpx.Client(base_url=url, follow_redirects=False, timeout=20)
    r = cl.post("/login", data={"username": user, "password": password or PASSWORDS[user],
                                "csrf": csrf_of(cl, "/login"), "next": "/fleet"})
    assert r.status_code == 303, r.text[:500]
    return cl


def csrf_of(cl: httpx.Client, path: str) -> str:
    import re

    page = cl.get(path).text
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page[:300]
    return m.group(1)


def browser(width: int = 1400, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--lang=vi-VN", "--disable-extensions",
              "--no-first-run", "--force-device-scale-factor=1",
              # live view: WebRTC on loopback, video that starts without a click
              "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
              "--disable-features=WebRtcHideLocalIpsWithMdns"):
        opts.add_argument(a)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=opts, service=service)


def browser_login(drv, url: str, user: str, password: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    drv.get(url + "/login")
    drv.find_element(By.ID, "username").send_keys(user)
    drv.find_element(By.ID, "password").send_keys(password or PASSWORDS[user])
    drv.find_element(By.ID, "login").click()
    # the form post and its redirect complete before the test goes on
    wait_until(lambda: "/login" not in drv.current_url or drv.find_elements(By.ID, "login-error"), 20)


def screenshot(drv, name: str) -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    p = SCREENS / f"{name}.png"
    drv.save_screenshot(str(p))
    return p


def wait_until(pred, timeout: float = 20.0, step: float = 0.1):
    """Poll `pred` until it is truthy or `timeout` passes. A page that is being replaced while
    `pred` reads it (an element gone stale or not there yet) counts as "not yet", as
    selenium's own waits treat it."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except (StaleElementReferenceException, NoSuchElementException):
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(step)
