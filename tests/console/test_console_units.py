"""Pure pieces of the console, by tables: rate limiting on an injected clock, the Vietnamese
catalogue covers every text the templates use, ward time, the plan's projection."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from station.archive.db import open_archive
from station.console import ratelimit
from station.console.i18n import VI, WardTime, translate
from station.console.plan import Pole, layout

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path):
    return open_archive(f"sqlite:///{tmp_path / 'c.db'}")


# (seconds after T0 of each failure, asked at, expected wait in seconds)
CASES = [
    ([], 0, 0.0),
    ([0, 1, 2, 3], 4, 0.0),                 # four failures: still allowed
    ([0, 1, 2, 3, 4], 5, 295.0),            # the fifth: wait until the first leaves the window
    ([0, 1, 2, 3, 4], 299, 1.0),
    ([0, 1, 2, 3, 4], 300, 0.0),            # window passed
    ([10, 100, 200, 250, 299], 305, 5.0),   # the oldest of the last five counts
    ([0, 100, 200, 250, 299], 301, 0.0),    # only four within the window
]


@pytest.mark.parametrize(("fails", "at", "wait"), CASES)
def test_rate_limit_table(engine, fails, at, wait):
    for s in fails:
        ratelimit.record_failure(engine, "op", "10.0.0.1", T0 + timedelta(seconds=s))
    assert ratelimit.blocked_for(engine, "op", "10.0.0.9", T0 + timedelta(seconds=at)) == pytest.approx(wait)


def test_address_is_limited_across_user_names(engine):
    for i in range(ratelimit.MAX_PER_ADDRESS):
        ratelimit.record_failure(engine, f"user{i}", "10.0.0.1", T0)
    assert ratelimit.blocked_for(engine, "someone", "10.0.0.1", T0 + timedelta(seconds=1)) > 0
    assert ratelimit.blocked_for(engine, "someone", "10.0.0.2", T0 + timedelta(seconds=1)) == 0
    ratelimit.clear(engine, "user0")  # a good log-in forgets the name...
    assert ratelimit.blocked_for(engine, "x", "10.0.0.1", T0 + timedelta(seconds=1)) == 0  # 19 left
    for _ in range(ratelimit.MAX_PER_ADDRESS - 1):  # ...and one name's typos do not block the address
        ratelimit.record_failure(engine, "typo", "10.0.0.3", T0)
    assert ratelimit.blocked_for(engine, "someone", "10.0.0.3", T0 + timedelta(seconds=1)) == 0


def test_every_template_text_has_its_vietnamese():
    here = Path(__file__).resolve().parents[2] / "station" / "console"
    used = set()
    sources = [*(here / "templates").glob("*.html"), *(here / "pages").glob("*.py"), here / "web.py",
               here / "render.py"]
    for f in sources:
        used |= set(re.findall(r'\bt\("([^"]+)"', f.read_text(encoding="utf-8")))
        used |= set(re.findall(r'"(?:title|message|error_key)":\s*"([^"]+)"', f.read_text(encoding="utf-8")))
    used |= {label for _, label, _ in __import__("station.console.render", fromlist=["NAV"]).NAV}
    missing = sorted(u for u in used if u and u not in VI)
    assert not missing, missing
    assert translate("vi", "Acknowledged by {u}", u="an") == "Đã xác nhận bởi an"
    assert translate("en", "Acknowledged by {u}", u="an") == "Acknowledged by an"


@pytest.mark.parametrize(("utc", "shown"), [
    ("2026-11-29T17:00:00Z", "30/11/2026 00:00:00"),   # UTC+7, past midnight
    ("2026-06-01T00:00:00.5Z", "01/06/2026 07:00:00"),
    (datetime(2026, 1, 1, 0, 0), "01/01/2026 07:00:00"),  # naive = UTC (SQLite)
    ("not a time", "—"),
    (None, "—"),
])
def test_ward_time(utc, shown):
    assert WardTime("Asia/Ho_Chi_Minh").fmt(utc) == shown


def test_local_form_times_become_utc():
    w = WardTime("Asia/Ho_Chi_Minh")
    assert w.parse_local("2026-11-30T00:00") == datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
    assert w.parse_local("2026-13-01T00:00") is None and w.parse_local("") is None


def test_plan_places_poles_by_coordinates_north_up_and_keeps_the_rest_aside():
    poles = [Pole("a", "A", 21.0340, 105.8520), Pole("b", "B", 21.0330, 105.8530), Pole("c", "C", None, None)]
    p = layout(poles, 900, 560, tile_url="http://tiles.local/{z}/{x}/{y}.png")
    a, b = p.where("a"), p.where("b")
    assert a and b and a.x < b.x and a.y < b.y  # east is right, north is up
    assert all(50 - 1 <= q.x <= 850 + 1 and 50 - 1 <= q.y <= 510 + 1 for q in p.placed)
    assert [q.node_id for q in p.unplaced] == ["c"]
    assert p.tiles and all(re.match(r"http://tiles.local/\d+/\d+/\d+\.png", u) for u, *_ in p.tiles)
    assert 0 < p.scale_px < 900
    assert layout([Pole("x", "X", None, None)]).placed == []


def test_every_colour_an_event_can_carry_is_named_in_vietnamese():
    from node.vision.appearance import COLOUR_NAMES

    missing = [c for c in COLOUR_NAMES if c not in VI]
    assert not missing, missing
    assert translate("vi", "brown") == "nâu" and translate("en", "brown") == "brown"


def test_every_vietnamese_text_keeps_the_placeholders_of_its_english():
    fields = re.compile(r"\{(\w*)\}")
    wrong = [k for k, v in VI.items() if sorted(fields.findall(k)) != sorted(fields.findall(v))]
    assert not wrong, wrong


def test_search_cursor_round_trips_and_refuses_anything_it_did_not_sign():
    from station.console import cursor

    key = (datetime(2026, 11, 22, 18, 0, 0, 250), "20261122T180000-ev/ä 1")
    tok = cursor.encode("secret-a", key)
    assert cursor.decode("secret-a", tok) == key and "/" not in tok and "+" not in tok
    body, mac = tok.rsplit(".", 1)
    forged_body = cursor.encode("secret-a", (key[0], "other")).rsplit(".", 1)[0]
    for bad in ("", ".", "abc", tok + "0", tok[:-1], f"{forged_body}.{mac}", f"{body}.{mac}.x",
                f"{body}!.{mac}", "x" * 500):
        with pytest.raises(cursor.CursorError):
            cursor.decode("secret-a", bad)
    with pytest.raises(cursor.CursorError):
        cursor.decode("secret-b", tok)  # another console's link
    from itsdangerous import URLSafeSerializer

    for value in ([key[0].isoformat(), ""], ["not a time", "x"], "text", [1, 2, 3],
                  [key[0].isoformat() + "+00:00", "x"]):  # signed right, but not a cursor
        forged = cursor._serializer("secret-a").dumps(value)
        with pytest.raises(cursor.CursorError):
            cursor.decode("secret-a", forged)
    session_like = URLSafeSerializer("secret-a").dumps([key[0].isoformat(), key[1]])
    with pytest.raises(cursor.CursorError):
        cursor.decode("secret-a", session_like)  # same secret, signed for another use


@pytest.mark.parametrize(("asked", "name"), [
    ("Vụ việc Đồng Xuân 17/2026", "Vu viec Dong Xuan 172026"),
    ("vu-viec-17", "vu-viec-17"),
    ("  — ", "hold-op"),
    ("Án " + "x" * 80, "An " + "x" * 61),
    ("case: 2026.11", "case: 2026.11"),
])
def test_a_hold_name_is_what_the_node_takes(asked, name):
    from node.record.holds import _NAME
    from station.console.pages.nodes import hold_name

    assert hold_name(asked, "op") == name and _NAME.match(name)


@pytest.mark.parametrize(("display", "user", "owner"), [
    ("Nguyễn Văn An", "op", "Nguyễn Văn An (op)"),
    ("Trung tá " + "Nguyễn " * 20, "canbo-trucban-01", None),  # shortened, the user name whole
    ("", "op", "(op)"),
])
def test_a_hold_owner_fits_the_node(display, user, owner):
    from station.console.pages.nodes import hold_owner

    got = hold_owner(display, user)
    assert len(got) <= 64 and got.endswith(f"({user})") and (owner is None or got == owner), got
