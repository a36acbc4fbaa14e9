"""The threads of a running node are the ones ``docs/threads.md`` lists (issue 9).

A real node runs in-process: synthetic camera, real broker, the real person model (so the
inference thread runs), GPIO on gpiozero's mock pin factory with a status LED. Every thread
started while it runs (recorded as it starts: short-lived ones too) must match a row of the
table, the rows this setup starts must all be alive, the outbox has one drain thread however
many messages are acknowledged, and nothing outlives ``Node.stop``.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

from node.app import Node
from node.config import config_from_dict

DOC = Path(__file__).resolve().parents[2] / "docs" / "threads.md"

#: Rows of the table a node with a camera, analysis, a model, an outbox and an LED always runs.
ALWAYS = {"capture", "encoder", "analysis", "camnode-infer", "rec-writer", "rec-retention",
          "paho-mqtt-client-<client id>", "outbox-drain", "status-led"}


#: Rows a node with ``[live]`` (a relay and its own RTSP server) runs during a main + sub session.
LIVE = {"live-push-<stream>", "live-sub-encoder", "rtsp-ready"}
#: Rows of the station's table the media relay (with its browser side) runs once a page is fetched.
RELAY = {"relay-supervisor", "relay-ready", "live-pages", "live-pages-request"}
STATION_HEADING = "## Threads of the station"


def documented(station: bool = False) -> dict[str, re.Pattern[str]]:
    """Thread names of the node's table (``station``: of the station's), first cell in backticks
    → a pattern (``<...>``: anything)."""
    out = {}
    text = DOC.read_text()
    node_part, _, station_part = text.partition(STATION_HEADING)
    for line in (station_part if station else node_part).splitlines():
        m = re.match(r"^\| `([^`]+)` \|", line)
        if m:
            name = m.group(1)
            parts = re.split(r"<[^>]+>", name)
            out[name] = re.compile(".+".join(re.escape(p) for p in parts) + r"\Z")
    return out


def test_the_table_parses():
    names = documented()
    assert set(names) >= ALWAYS and "MainThread" in names
    assert names["paho-mqtt-client-<client id>"].match("paho-mqtt-client-camnode-pole-9")
    assert not names["capture"].match("capture-2")
    assert set(names) >= LIVE and not set(names) & RELAY  # the node's table only
    assert set(documented(station=True)) >= RELAY


def _node_config(tmp_path, port: int, **sections):
    """A small synthetic node on the test broker, with ``sections`` besides."""
    return config_from_dict({
        "node": {"id": "pole-9"},
        "camera": {"source": "synthetic", "width": 320, "height": 240, "fps": 10.0,
                   "lores_width": 160, "lores_height": 120},
        "encoder": {"gop_s": 1.0, "bitrate_kbps": 300},
        "storage": {"path": str(tmp_path / "rec"), "segment_s": 2.0},
        "mqtt": {"port": port, "heartbeat_s": 0.3, "reconnect_max_s": 1.0},
        **sections,
    })


def test_live_threads_match_the_table(tmp_path, broker, shared_dir):
    from hw.gpio import GpioSpec, build_devices, make_pin_factory

    cfg = _node_config(tmp_path, broker.port)
    before = {t.ident for t in threading.enumerate()}
    started: list[str] = []

    def record_start(frame, event, arg):  # runs first thing in every new thread
        started.append(threading.current_thread().name)
        sys.settrace(None)  # and traces nothing more

    threading.settrace(record_start)
    factory = make_pin_factory("mock")
    devices = build_devices(GpioSpec(factory="mock", ir_pin=17, ircut_mode="level", ircut_pin=27,
                                     led_pin=22), pin_factory=factory)
    devices.led.start()  # as Node._build_devices does for the devices it builds itself
    node = Node(cfg, devices=devices, base_dir=str(shared_dir))
    stop = threading.Event()
    runner = threading.Thread(target=node.run, args=(stop,), name="test-runner")
    runner.start()
    seen: set[str] = set()
    try:
        assert node.link.wait_connected(15)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                node.pipeline.counters.frames_encoded >= 20 and node.recorder.health()["segments_closed"]):
            time.sleep(0.1)
        assert node.analyzer is not None and node.analyzer.detector is not None, node.analyzer.reason
        for i in range(5):  # acknowledged one by one: each ack leaves the link idle
            node.link.send_durable(node.link.topics.event, {"id": f"t{i}", "phase": "test"})
            deadline = time.monotonic() + 10
            while len(node.link.outbox) and time.monotonic() < deadline:
                time.sleep(0.05)
        for _ in range(5):  # a few looks: short-lived threads (probes) may come and go
            seen |= {t.name for t in threading.enumerate()
                     if t.ident not in before and t is not runner}
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(30)
        threading.settrace(None)  # type: ignore[arg-type]
    names = documented()
    assert started.count("outbox-drain") == 1, started
    seen |= set(started) - {"test-runner"}
    unlisted = sorted(n for n in seen if not any(p.match(n) for p in names.values()))
    assert unlisted == [], f"threads not in docs/threads.md: {unlisted}"
    missing = sorted(r for r in ALWAYS if not any(names[r].match(n) for n in seen))
    assert missing == [], f"documented threads not running: {missing}"
    # and they stop: nothing the node started outlives Node.stop (the LED's thread included)
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()
            and t is not runner and not t.name.startswith("probe-")]
    assert left == [], left


def unlisted(seen: set[str], names: dict[str, re.Pattern[str]]) -> list[str]:
    return sorted(n for n in seen if not any(p.match(n) for p in names.values()))


def not_seen(rows: set[str], seen: set[str], names: dict[str, re.Pattern[str]]) -> list[str]:
    return sorted(r for r in rows if not any(names[r].match(n) for n in seen))


def test_a_live_session_and_the_relay_run_only_listed_threads(tmp_path, broker):
    """The station's real media relay (GStreamer RTSP server, Janus, the page) and a node with
    ``[live]`` (its own RTSP server too) running a main and a sub session into it: the relay's
    threads are the station table's, the node's the node table's."""
    import urllib.request

    from node.localbroker import free_port
    from station.live.credentials import load_secret, node_password
    from station.live.relay import Relay

    started: list[str] = []

    def record_start(frame, event, arg):
        started.append(threading.current_thread().name)
        sys.settrace(None)

    before = {t.ident for t in threading.enumerate()}
    state = tmp_path / "station"
    threading.settrace(record_start)
    relay = Relay(state, ["pole-9"], port=0)
    node = None
    runner = None
    stop = threading.Event()
    try:
        relay.start()
        with urllib.request.urlopen(f"{relay.web_base}/live.html", timeout=10) as r:
            assert r.status == 200
        relay_started, started[:] = set(started), []
        pw = tmp_path / "stream-password"
        pw.write_text(node_password(load_secret(state), "pole-9"))
        viewer = tmp_path / "viewer-password"
        viewer.write_text("a-viewer-password-long-enough")
        for f in (pw, viewer):
            f.chmod(0o600)
        cfg = _node_config(tmp_path, broker.port, **{
            "detect": {"enabled": False},
            "live": {"relay": relay.rtsp_base, "password_file": str(pw), "sub_width": 160,
                     "sub_height": 96, "sub_fps": 5.0, "serve_port": free_port(),
                     "serve_address": "127.0.0.1", "serve_password_file": str(viewer)},
        })
        node = Node(cfg)
        runner = threading.Thread(target=node.run, args=(stop,), name="test-runner")
        runner.start()
        assert node.link.wait_connected(15)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and node.pipeline.counters.frames_encoded < 10:
            time.sleep(0.1)
        for stream in ("main", "sub"):
            node.live.command({"stream": stream, "minutes": 1})
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen |= {t.name for t in threading.enumerate() if t.ident not in before and t is not runner}
            st = node.live.status()
            if st["state"] == "main+sub" and st.get("rtsp_server", {}).get("pushing") and \
                    all(v["sent_bytes"] > 0 for v in st["sessions"].values()):
                break
            time.sleep(0.1)
        assert st["state"] == "main+sub" and st["rtsp_server"]["pushing"], st
    finally:
        stop.set()
        if runner is not None:
            runner.join(30)
        threading.settrace(None)  # type: ignore[arg-type]
        relay.stop()
    node_names, station_names = documented(), documented(station=True)
    relay_seen = relay_started
    node_seen = (seen | set(started)) - relay_seen - {"test-runner"}
    assert unlisted(relay_seen, station_names) == [], f"relay threads not in docs/threads.md: {relay_seen}"
    assert not_seen(RELAY, relay_seen, station_names) == []
    assert unlisted(node_seen, node_names) == [], f"node threads not in docs/threads.md: {node_seen}"
    assert not_seen(LIVE, node_seen, node_names) == []
