"""Bad input against the real console over HTTP (real uvicorn, real broker, real database):
forged CSRF, wrong passwords rate-limited, SQL-ish and script-ish search strings, path tricks in
file names — each refused cleanly, nothing lost, nothing executed."""

from __future__ import annotations

import httpx
import pytest

from station.console.audit import recent
from station.console.users import get_user
from tests.console.harness import csrf_of, http_login, start_console

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"


@pytest.fixture
def site(tmp_path, broker):
    r = start_console(tmp_path, broker.port)
    yield r
    r.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_site(request, tmp_path, broker):
    """The console on SQLite (the embedded default) and on the real PostgreSQL server."""
    if request.param == "sqlite":
        r = start_console(tmp_path, broker.port)
        yield r
        r.stop()
        return
    import secrets

    import sqlalchemy as sa

    name = f"console_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    r = start_console(tmp_path, broker.port, db=PG + name)
    try:
        yield r
    finally:
        r.stop()
        r.console.engine.dispose()
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_forged_or_missing_csrf_is_refused_and_audited(db_site):
    op = http_login(db_site.url, "op")
    adm = http_login(db_site.url, "adm")
    # a cross-site form post carries the session cookie but not the page's token
    for data in ({"username": "evil", "role": "admin", "password": "x" * 12},
                 {"username": "evil", "role": "admin", "password": "x" * 12, "csrf": "forged"}):
        r = adm.post("/admin/users", data=data)
        assert r.status_code == 403 and "không hợp lệ" in r.text
    assert get_user(db_site.console.engine, "evil") is None
    r = op.post("/alerts/ev-1/ack", data={"node": "pole-1"}, headers={"X-CSRF-Token": "nope"})
    assert r.status_code == 403
    # logging in needs the login page's token too (no log-in CSRF)
    anon = httpx.Client(base_url=db_site.url)
    assert anon.post("/login", data={"username": "op", "password": "operator-pass-1"}).status_code == 403
    assert len([e for e in recent(db_site.console.engine, 50, action="csrf") if not e.allowed]) == 4
    # the real token works
    ok = adm.post("/admin/users", data={"username": "newbie", "role": "operator",
                                        "password": "long-enough-1", "csrf": csrf_of(adm, "/admin/users")})
    assert ok.status_code == 200 and get_user(db_site.console.engine, "newbie") is not None


def test_wrong_passwords_are_rate_limited_then_the_right_one_waits(db_site):
    cl = httpx.Client(base_url=db_site.url)
    codes = []
    for i in range(7):
        r = cl.post("/login", data={"username": "op", "password": f"guess-{i}",
                                    "csrf": csrf_of(cl, "/login")})
        codes.append(r.status_code)
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    r = cl.post("/login", data={"username": "op", "password": "operator-pass-1",
                                "csrf": csrf_of(cl, "/login")})
    assert r.status_code == 429 and "Thử lại sau" in r.text  # even the right password waits
    failures = [e for e in recent(db_site.console.engine, 50, "op", "login") if not e.allowed]
    assert {e.detail for e in failures} == {"wrong password", "rate-limited"}
    # the other officers at the same address are not locked out by one name being guessed
    http_login(db_site.url, "adm")


@pytest.mark.parametrize("query", [
    {"label": "person' OR 1=1 --"},
    {"colour": "red'; DROP TABLE console_users; --"},
    {"colour": "<script>alert(1)</script>"},
    {"node": "\"><img src=x onerror=alert(1)>"},
    {"since": "2026-13-45T99:99"},
])
def test_sql_and_script_in_search_are_refused_cleanly(site, query):
    op = http_login(site.url, "op")
    r = op.get("/search", params=query)
    assert r.status_code == 400
    assert "<script>alert" not in r.text and "<img src=x" not in r.text  # escaped, never markup
    assert 'class="error search-error"' in r.text
    assert get_user(site.console.engine, "op") is not None  # the users table is still there


@pytest.mark.parametrize("path", ["/snapshot/..%2F..%2Fconsole.secret.jpg",
                                  "/snapshot/%2e%2e%2fconsole.db.jpg",
                                  "/static/..%2Fconsole.secret", "/static/../run.py",
                                  "/snapshot/" + "a" * 300 + ".jpg", "/nodes/..%2F..%2Fetc%2Fpasswd"])
def test_path_tricks_in_names_get_nothing(site, path):
    op = http_login(site.url, "op")
    r = op.get(path)
    assert r.status_code in (400, 404)
    assert "secret" not in r.text.lower() or r.status_code == 404
    assert b"SECRET" not in r.content and b"import" not in r.content


def test_a_heartbeat_with_absurd_numbers_breaks_no_page(site, broker):
    """One node's heartbeat with numbers no sensor reports (a 400-digit temperature overflowed a
    float in the fleet view: every page that shows the fleet answered 500 while it was the
    node's latest): over the real broker to the real console, each page still answers."""
    import paho.mqtt.publish as publish

    from tests.stationproc import wait_until

    huge = "1" + "0" * 400
    beat = ('{"node_id": "pole-9", "utc": "2026-11-30T01:00:00Z", "heartbeat_s": 10, "fps_out": 1e308, '
            f'"disk_free_mb": -{huge}, "temperatures_c": {{"cpu": {huge}, "gpu": 41.5}}, '
            f'"cpu_load": [{huge}], "link": {{"connects": 1e300}}, "faults": {{}}}}')
    publish.single("camnode/pole-9/heartbeat", beat, qos=1, hostname="127.0.0.1", port=broker.port)
    assert wait_until(lambda: site.console.live.history("pole-9"), 10)
    op = http_login(site.url, "op")
    for path in ("/fleet", "/nodes/pole-9", "/alerts", "/search", "/live"):
        r = op.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    (row,) = [r for r in site.console.live.fleet.rows() if r["node"] == "pole-9"]
    assert row["temp_c"] == 41.5 and row["disk_free_mb"] is None and row["fps"] is None


def test_technician_cannot_ack_or_read_snapshots_and_is_audited(db_site):
    tech = http_login(db_site.url, "tech")
    assert tech.get("/alerts").status_code == 403
    assert tech.get("/alerts/stream").status_code == 403
    assert tech.get("/snapshot/x.jpg").status_code == 403
    r = tech.post("/alerts/x/ack", data={"node": "pole-1", "csrf": csrf_of(tech, "/fleet")})
    assert r.status_code == 403
    actions = {e.action for e in recent(db_site.console.engine, 50, "tech") if not e.allowed}
    assert actions == {"refused:alerts", "refused:footage"}


def test_sessions_end_when_the_password_changes(db_site):
    op = http_login(db_site.url, "op")
    assert op.get("/alerts").status_code == 200
    from station.console.users import set_password

    set_password(db_site.console.engine, "op", "a-brand-new-pass")
    r = op.get("/alerts")
    assert r.status_code == 303 and "/login" in r.headers["location"]


@pytest.mark.parametrize("how", ["logout elsewhere", "disabled"])
def test_an_open_alert_feed_ends_with_its_session(site, monkeypatch, how):
    """The alert feed is one long response: a log-out in another tab or an account disabled
    ends it (it was checked once, when it opened, and streamed on for hours)."""
    import threading
    import time

    from station.console.pages import alerts
    from station.console.users import set_active

    monkeypatch.setattr(alerts, "RECHECK_S", 0.5)
    op = http_login(site.url, "op")
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        with op.stream("GET", "/alerts/stream", timeout=30) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                lines.append(line)
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1.5)  # open, and checked at least once: still allowed
    assert not done.is_set() and lines[:1] == ["retry: 2000"]
    if how == "logout elsewhere":
        other = http_login(site.url, "op")  # the same officer's other tab (same epoch)
        assert other.post("/logout", data={"csrf": csrf_of(other, "/fleet")}).status_code == 303
    else:
        set_active(site.console.engine, "op", False)
    assert done.wait(10), lines
    assert "event: ended" in lines


def test_live_pages_renew_their_sessions_for_an_hour_then_stop(site):
    """The live pages reload before their 10-minute sessions (and viewer tokens) end, asking
    the poles again — five times, not forever: a tab left open must not keep poles streaming."""
    from station.console.pages.live import MAX_RENEWALS, RELOAD_S

    op = http_login(site.url, "op")
    first = op.get("/live").text
    assert f'<meta http-equiv="refresh" content="{RELOAD_S}; url=/live?renew=1">' in first
    assert f'url=/live?renew={MAX_RENEWALS}"' in op.get(f"/live?renew={MAX_RENEWALS - 1}").text
    last = op.get(f"/live?renew={MAX_RENEWALS}").text
    assert 'http-equiv="refresh"' not in last
    assert 'url=/live?renew=1"' in op.get("/live?renew=x").text  # nonsense counts as the start
