"""Console sessions end on the server: after log-out a copied session cookie no longer works;
``--https-only`` marks the cookie Secure; the live key never comes from the command line (real
uvicorn, real broker, real database; the CLI as a real process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.console.harness import csrf_of, free_port, http_login, start_console


@pytest.fixture
def site(tmp_path, broker):
    r = start_console(tmp_path, broker.port)
    yield r
    r.stop()


def test_log_out_ends_the_session_for_a_copied_cookie_too(site):
    cl = http_login(site.url, "op")
    assert cl.get("/fleet").status_code == 200
    thief = httpx.Client(base_url=site.url, follow_redirects=False, timeout=20,
                         cookies=dict(cl.cookies))  # the cookie copied off a shared PC
    assert thief.get("/fleet").status_code == 200
    r = cl.post("/logout", data={"csrf": csrf_of(cl, "/fleet")})
    assert r.status_code == 303
    r = thief.get("/fleet")
    assert r.status_code == 303 and r.headers["location"].startswith("/login"), r.status_code
    # logging in again works, with a fresh session
    assert http_login(site.url, "op").get("/fleet").status_code == 200


def _console(tmp_path, broker, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [sys.executable, "-m", "station.cli", "console", "--db", f"sqlite:///{tmp_path / 'c.db'}",
            "--port", str(broker.port), "--listen", f"127.0.0.1:{port}",
            "--secret-file", str(tmp_path / "console.secret"), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CAMNODE_STATION_DIR": str(tmp_path / "station")})
    return proc, port


def _wait_listening(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("console did not listen")


@pytest.mark.parametrize("https_only", [False, True])
def test_https_only_marks_the_session_cookie_secure(tmp_path, broker, https_only):
    proc, port = _console(tmp_path, broker, *(["--https-only"] if https_only else []))
    try:
        _wait_listening(proc, port)
        r = httpx.get(f"http://127.0.0.1:{port}/login", timeout=20)
        cookie = r.headers.get("set-cookie", "")
        assert cookie.startswith("camnode_console="), r.headers
        assert ("secure" in cookie.lower()) == https_only, cookie
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_live_url_carrying_a_key_is_refused(tmp_path, broker):
    proc, _ = _console(tmp_path, broker, "--live-url",
                       "http://post:8089/live.html?node={node}&stream={stream}#key=abc")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "carries no key" in err and len(err.strip().splitlines()) == 1, err


def test_the_console_reads_the_key_from_the_station_directory(tmp_path, broker):
    from station.connect import Connection
    from station.console.run import Settings, live_secret
    from station.live.credentials import load_secret

    settings = Settings(db="", connection=Connection(port=broker.port), station_dir=str(tmp_path / "st"),
                        live_url="http://post:8089/live.html?node={node}&stream={stream}")
    key = live_secret(settings)
    assert key == load_secret(tmp_path / "st") and len(key) >= 32
    assert oct((tmp_path / "st" / "live-secret").stat().st_mode & 0o777) == "0o600"
    assert live_secret(Settings(db="", station_dir=str(tmp_path / "st"))) == b""  # no live view, no key


def test_a_snapshot_is_never_kept_in_the_browser_cache(site, broker):
    """Footage viewed on a shared PC must not stay in its browser's cache after log-out."""
    import paho.mqtt.publish as publish

    from tests.console.harness import wait_until

    jpeg = b"\xff\xd8\xff\xe0" + b"\0" * 64 + b"\xff\xd9"
    publish.single("camnode/pole-1/snapshot/ev-cache-1", jpeg, qos=1, hostname="127.0.0.1", port=broker.port)
    assert wait_until(lambda: site.console.live.snapshot("ev-cache-1") is not None, 20)
    r = http_login(site.url, "op").get("/snapshot/ev-cache-1.jpg")
    assert r.status_code == 200 and r.content == jpeg
    assert "no-store" in r.headers["cache-control"] and "max-age" not in r.headers["cache-control"], r.headers
