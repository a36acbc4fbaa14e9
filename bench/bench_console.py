"""The web console under load, in headless chromium (the system browser).

* Alert latency: a node publishes an object event (the real MQTT contract, QoS 1) to a real
  mosquitto; the console's feed shows it in an open browser. Measured per event: MQTT
  delivery to a plain subscriber (the baseline: what the broker itself costs) and to the
  browser's feed (the DOM row inserted); p50/p95, and the console's share.
* Page load: every page's load time (navigation start → load event, from the browser's own
  Performance API) with an empty archive and with 1,000,000 archived events (60 poles, 30 days,
  filled by ``bench_search.fill``, the station's own generator) plus 1,000,000 rows in the
  audit log (every footage view is audited, so it grows too) and the acknowledgement table;
  p50/p95 and the ratio loaded/empty. The trace page needs an archived event: its figure is
  the loaded one only.

Usage: python bench/bench_console.py [--rows 1000000] [--events 60] [--loads 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_search's generator

OPERATOR_PAGES = ("/fleet", "/alerts", "/nodes/pole-07", "/live", "/search",
                  "/search?label=person&node=pole-07&colour=red", "/evidence")
ADMIN_PAGES = ("/admin/audit", "/admin/users")
PAGES = OPERATOR_PAGES + ADMIN_PAGES


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def fill(engine, rows: int) -> None:
    from station.archive.schema import console_acks as acks
    from station.archive.schema import console_audit as audit

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    batch = 20_000
    with engine.begin() as c:
        for i in range(0, rows, batch):
            n = min(batch, rows - i)
            c.execute(audit.insert(), [
                {"at_utc": t0 + timedelta(seconds=i + k), "username": f"user{(i + k) % 40}",
                 "role": "operator",
                 "action": "view:snapshot", "target": f"pole-{(i + k) % 60}/ev{i + k}", "allowed": True,
                 "address": "10.0.0.5", "detail": ""} for k in range(n)])
            c.execute(acks.insert(), [
                {"event_id": f"ev{i + k}", "node_id": f"pole-{(i + k) % 60}", "username": "user1",
                 "at_utc": t0 + timedelta(seconds=i + k)} for k in range(n)])


def load_times(drv, url: str, loads: int, extra: tuple[str, ...] = ()) -> dict[str, list[float]]:
    """Each page ``loads`` times: as the operator, then as the admin (their pages)."""
    from tests.console.harness import browser_login

    out: dict[str, list[float]] = {p: [] for p in PAGES + extra}
    for user, pages in (("op", OPERATOR_PAGES + extra), ("adm", ADMIN_PAGES)):
        drv.delete_all_cookies()
        browser_login(drv, url, user)
        for _ in range(loads):
            for p in pages:
                drv.get(url + p)
                assert not drv.find_elements("id", "refused"), p
                out[p].append(drv.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0];"
                    "return n.loadEventEnd - n.startTime;"))
    return out


def publisher(port: int):
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument("--loads", type=int, default=20)
    args = ap.parse_args()

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from node.localbroker import LocalBroker
    from tests.console.harness import browser, browser_login, start_console

    results: dict[str, object] = {}
    with LocalBroker() as b, tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        db = f"sqlite:///{tmpd / 'archive.db'}"
        console = start_console(tmpd, b.port, db=db)
        pub = publisher(b.port)
        hb = {"node_id": "pole-07", "heartbeat_s": 1.0, "fps_out": 10.0, "disk_free_mb": 5000, "faults": {},
              "cpu_load": [0.3, 0.2, 0.1], "temperatures_c": {"cpu": 50.0}}
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(1.0):
                now = datetime.now(UTC).isoformat()
                pub.publish("camnode/pole-07/heartbeat", json.dumps({**hb, "utc": now}))

        threading.Thread(target=beat, name="bench-heartbeat", daemon=True).start()
        pub.publish("camnode/pole-07/status", json.dumps({"state": "online"}), qos=1, retain=True)
        drv = browser()
        try:
            browser_login(drv, console.url, "op")
            drv.get(console.url + "/alerts")
            while "st-OK" not in drv.find_element("id", "feed-state").get_attribute("class"):
                time.sleep(0.05)
            # ---- alert latency
            sent: dict[str, float] = {}
            for i in range(args.events):
                eid = f"bench-{i}"
                msg = {"id": eid, "kind": "object", "phase": "start", "label": "person", "score": 0.8,
                       "start": datetime.now(UTC).isoformat(), "snapshot": False}
                sent[eid] = time.time() * 1000
                pub.publish("camnode/pole-07/event", json.dumps(msg), qos=1)
                time.sleep(0.25)
            time.sleep(2)
            seen = drv.execute_script(
                "return Object.fromEntries([...document.querySelectorAll('#alerts .alert')]"
                ".map(a => [a.dataset.id, Number(a.dataset.seenMs)]));")
            browser_lat = [seen[e] - t for e, t in sent.items() if e in seen]
            missing = [e for e in sent if e not in seen]
            # baseline: the same messages to a plain MQTT subscriber (what the broker costs)
            stamps: dict[str, float] = {}
            got = threading.Event()
            sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
            sub.on_message = lambda c, u, m: stamps.setdefault(json.loads(m.payload)["id"],
                                                               time.time() * 1000)
            sub.on_subscribe = lambda *a: got.set()
            sub.connect("127.0.0.1", b.port)
            sub.subscribe("camnode/+/event", qos=1)
            sub.loop_start()
            got.wait(5)
            sent2 = {}
            for i in range(args.events):
                eid = f"base-{i}"
                sent2[eid] = time.time() * 1000
                pub.publish("camnode/pole-9/event",
                            json.dumps({"id": eid, "kind": "motion", "phase": "start"}), qos=1)
                time.sleep(0.05)
            time.sleep(1)
            sub.loop_stop()
            base_lat = [stamps[e] - t for e, t in sent2.items() if e in stamps]
            lat = results["alert_latency_ms"] = {
                "browser_p50": round(statistics.median(browser_lat), 1),
                "browser_p95": round(pct(browser_lat, 95), 1),
                "mqtt_baseline_p50": round(statistics.median(base_lat), 1),
                "mqtt_baseline_p95": round(pct(base_lat, 95), 1),
                "ratio_p95": round(pct(browser_lat, 95) / max(pct(base_lat, 95), 0.1), 1),
                "events": len(browser_lat), "missing": len(missing)}
            print(f"alert latency node event → browser feed: p50 {lat['browser_p50']} ms, "
                  f"p95 {lat['browser_p95']} ms over {len(browser_lat)} events ({len(missing)} missing); "
                  f"MQTT alone p95 {lat['mqtt_baseline_p95']} ms", flush=True)
            # ---- page loads, empty then loaded
            empty = load_times(drv, console.url, args.loads)
            import bench_search

            took = bench_search.fill(db, args.rows)
            print(f"archived {args.rows:,} events in {took:.0f} s", flush=True)
            t = time.monotonic()
            fill(console.console.engine, args.rows)
            print(f"filled {args.rows:,} audit rows + {args.rows:,} acknowledgements in "
                  f"{time.monotonic() - t:.0f} s", flush=True)
            some = console.console.archive.search(since=None, until=None, label="person", colour=None,
                                                  node="pole-07", limit=1)[0]["id"]
            trace_page = (f"/trace/{some}",)
            loaded = load_times(drv, console.url, args.loads, trace_page)
            pages = {}
            for p in PAGES:
                e95, l95 = pct(empty[p], 95), pct(loaded[p], 95)
                pages[p] = {"empty_p95": round(e95, 1), "loaded_p95": round(l95, 1),
                            "loaded_p50": round(statistics.median(loaded[p]), 1),
                            "ratio_p95": round(l95 / max(e95, 0.1), 2)}
                print(f"page {p:<16} p95 {e95:7.1f} ms empty, {l95:7.1f} ms with {args.rows:,} rows "
                      f"(×{pages[p]['ratio_p95']})", flush=True)
            tl = loaded[trace_page[0]]
            pages["/trace/<event>"] = {"loaded_p95": round(pct(tl, 95), 1),
                                       "loaded_p50": round(statistics.median(tl), 1)}
            print(f"page /trace/<event>    p95 {pct(tl, 95):7.1f} ms with {args.rows:,} events", flush=True)
            results["page_load_ms"] = pages
        finally:
            stop.set()
            drv.quit()
            pub.loop_stop()
            console.stop()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
