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


def documented() -> dict[str, re.Pattern[str]]:
    """Thread names of the table (first cell, in backticks) → a pattern (``<...>``: anything)."""
    out = {}
    for line in DOC.read_text().splitlines():
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


def test_live_threads_match_the_table(tmp_path, broker, shared_dir):
    from hw.gpio import GpioSpec, build_devices, make_pin_factory

    cfg = config_from_dict({
        "node": {"id": "pole-9"},
        "camera": {"source": "synthetic", "width": 320, "height": 240, "fps": 10.0,
                   "lores_width": 160, "lores_height": 120},
        "encoder": {"gop_s": 1.0, "bitrate_kbps": 300},
        "storage": {"path": str(tmp_path / "rec"), "segment_s": 2.0},
        "mqtt": {"port": broker.port, "heartbeat_s": 0.3, "reconnect_max_s": 1.0},
    })
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
