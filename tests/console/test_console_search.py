"""The search page over HTTP against the real console (real uvicorn, real broker) on SQLite and
on the real PostgreSQL server: paging by signed cursor (every row once, filters kept, a tampered
link a clear 400), the header's count, "near pole P within R m" from the inventory's
coordinates, both languages, and the audit of every page."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

from sqlalchemy import insert

from station.archive.query import EventQuery, search_page
from station.archive.schema import events, nodes
from station.console.audit import recent
from tests.console.harness import csrf_of, http_login
from tests.console.test_console_http import db_site  # noqa: F401  (the fixture)

T0 = datetime(2026, 11, 22, 11, 0, 0)
# pole-1 and pole-2 are 89 m apart, pole-3 1.1 km away, pole-4 has no position
POLES = {"pole-1": (21.0300, 105.8500), "pole-2": (21.0308, 105.8500), "pole-3": (21.0400, 105.8500),
         "pole-4": (None, None)}


def fill(engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(nodes), [{"id": n, "site": "old-quarter", "pole": n.upper(), "lat": lat,
                                      "lon": lon, "neighbours": [], "pubkey": "", "updated": T0}
                                     for n, (lat, lon) in POLES.items()])
        rows = []
        for i in range(160):
            label = "person" if i % 8 else "car"  # 140 people, 20 cars
            start = T0 + timedelta(seconds=(i // 4) * 10)  # four events at every instant
            rows.append({"id": f"ev-{i:03d}", "node": f"pole-{i % 3 + 1}", "kind": "object", "label": label,
                         "phase": "end", "phases": 7, "start": start, "end": None, "duration_s": 1.0,
                         "score": 0.6, "classes": None, "box": None, "snapshot": False, "snapshot_sha": None,
                         "colour_upper": None, "colour_lower": None, "colour_body": None, "entry_side": None,
                         "exit_side": None, "payload": {}, "messages": 1, "received": start})
        conn.execute(insert(events), rows)


def ids(page: str) -> list[str]:
    return re.findall(r'class="alert result-item" data-id="([^"]+)"', page)


def link(page: str, which: str) -> str | None:
    m = re.search(rf'id="page-{which}" href="([^"]+)"', page)
    return html.unescape(m.group(1)) if m else None


def test_pages_walk_every_result_once_keep_filters_and_refuse_tampered_links(db_site):  # noqa: F811
    engine = db_site.console.engine
    fill(engine)
    op = http_login(db_site.url, "op")
    want = [r["id"] for r in search_page(engine, EventQuery(label="person", kind="object", limit=1000)).rows]
    assert len(want) == 140
    r = op.get("/search", params={"label": "person"})
    assert r.status_code == 200
    assert "Hiển thị 50 trong 140 kết quả" in r.text  # the truth, not "Results: 50"
    assert link(r.text, "newer") is None and link(r.text, "first") is None
    seen, pages = ids(r.text), [r.text]
    while (older := link(pages[-1], "older")) is not None:
        assert "label=person" in older  # the filters travel with the cursor
        r = op.get(older)
        assert r.status_code == 200 and link(r.text, "first") and link(r.text, "newer")
        seen += ids(r.text)
        pages.append(r.text)
    assert [len(ids(p)) for p in pages] == [50, 50, 40]
    assert seen == want  # no row skipped or repeated, equal start times included
    # back up from the last page: the middle page again, then the first (no newer link)
    r = op.get(link(pages[2], "newer"))
    assert ids(r.text) == ids(pages[1])
    r = op.get(link(r.text, "newer"))
    assert ids(r.text) == ids(pages[0]) and link(r.text, "newer") is None
    # a tampered, foreign or malformed cursor is a clear 400 (never a 500, never SQL)
    good = re.search(r"older=([^&]+)", link(pages[0], "older")).group(1)
    body, mac = good.split(".")
    flipped = ("A" if body[5] != "A" else "B").join((body[:5], body[6:]))
    for bad in ({"older": f"{flipped}.{mac}"}, {"older": good[:-1]}, {"older": "abc"},
                {"newer": "' OR 1=1 --"}, {"older": good, "newer": good}, {"older": "x" * 5000}):
        r = op.get("/search", params={"label": "person", **bad})
        assert r.status_code == 400, bad
        assert "Liên kết trang bị hỏng" in r.text and not ids(r.text)
    # every page searched was audited under the officer's name
    audited = recent(engine, 50, "op", "search")
    assert len([e for e in audited if e.allowed]) >= 5
    assert any("page after" in e.detail for e in audited)
    assert any(e.detail.startswith("50 of 140") for e in audited)


def test_near_a_pole_within_a_radius_from_the_inventory(db_site):  # noqa: F811
    engine = db_site.console.engine
    fill(engine)
    op = http_login(db_site.url, "op")
    r = op.get("/search", params={"label": "car", "near": "pole-1", "radius": "100"})
    assert r.status_code == 200
    got = ids(r.text)
    cars_near = [f"ev-{i:03d}" for i in range(160) if i % 8 == 0 and i % 3 != 2]  # poles 1 and 2
    assert sorted(got) == cars_near and len(got) == len(cars_near) == 13
    assert re.search(r'id="near-poles">Các cột trong bán kính 100 m: pole-1, pole-2<', r.text)
    assert "13 kết quả" in r.text
    # within 1000 m is still not pole-3 (1.1 km); with the pole filter it is that pole only
    r = op.get("/search", params={"near": "pole-3", "radius": "1000", "node": "pole-3", "label": "car"})
    assert sorted(ids(r.text)) == [f"ev-{i:03d}" for i in range(160) if i % 8 == 0 and i % 3 == 2]
    # the pole without coordinates is offered but disabled, and refused with the reason
    assert re.search(r'<option value="pole-4"\s+disabled>POLE-4 — chưa có tọa độ', r.text)
    r = op.get("/search", params={"near": "pole-4", "radius": "200"})
    assert r.status_code == 400 and "Cột POLE-4 chưa có tọa độ trong danh mục" in r.text
    for bad in ({"near": "pole-1", "radius": "150"}, {"near": "pole-1", "radius": "1e9"},
                {"near": "pole-9", "radius": "200"}, {"near": "<script>", "radius": "200"}):
        r = op.get("/search", params=bad)
        assert r.status_code == 400 and 'class="error search-error"' in r.text and "<script>" not in r.text
    # in English, the same search says the same things in English
    r = op.post("/lang", data={"lang": "en", "back": "/search", "csrf": csrf_of(op, "/search")})
    assert r.status_code == 303
    r = op.get("/search", params={"label": "person", "near": "pole-1", "radius": "500"})
    assert "Showing 50 of 94 results, newest first" in r.text
    assert "Poles within 500 m: pole-1, pole-2" in r.text
    r = op.get("/search", params={"near": "pole-4"})
    assert r.status_code == 400 and "Pole POLE-4 has no position in the inventory" in r.text
    audited = recent(engine, 50, "op", "search")
    assert any("near=pole-1/100m" in e.target for e in audited)


def test_odd_numbers_and_dates_get_a_clear_answer_not_a_500(db_site):  # noqa: F811
    """Values that parse but overflow or are not numbers: a trace window of NaN minutes, a date
    in year 1 (east of UTC it has no UTC) — each answered, none a 500."""
    fill(db_site.console.engine)
    op = http_login(db_site.url, "op")
    for minutes in ("nan", "inf", "-inf", "1e999"):
        r = op.get("/trace/ev-001", params={"minutes": minutes})
        assert r.status_code == 200 and "ev-001" in r.text, (minutes, r.status_code)
    r = op.get("/search", params={"since": "0001-01-01T00:00"})  # the ward is UTC+7
    assert r.status_code == 400 and 'class="error search-error"' in r.text
    assert op.get("/search", params={"until": "9999-12-31T23:59"}).status_code == 200
