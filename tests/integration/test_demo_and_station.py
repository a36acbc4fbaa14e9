"""The README's first command: `camnode demo` prints heartbeats from the station view."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

from node.app import Node
from station.watch import Watcher
from tests.integration.test_node_inprocess import small_config


def test_station_watch_prints_status_and_heartbeats(tmp_path, broker):
    out = io.StringIO()
    w = Watcher(broker.host, broker.port, "camnode", out=out)
    w.start()
    node = Node(small_config(tmp_path, broker.port))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and out.getvalue().count("HEARTBEAT") < 2:
        time.sleep(0.1)
    stop.set()
    th.join(20)
    time.sleep(0.5)
    w.stop()
    text = out.getvalue()
    assert "pole-9" in text and "STATUS    online" in text
    assert text.count("HEARTBEAT") >= 2 and "enc libx264" in text
    assert "STATUS    offline (shutdown)" in text


def test_demo_runs_until_interrupted(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "node", "demo", "--storage", str(tmp_path / "demo"),
                          "--heartbeat-s", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env={**os.environ, "CAMNODE_STATION_DIR": str(tmp_path / "station")})
    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.extend(p.stdout))
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum("HEARTBEAT" in ln for ln in lines) < 2:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)  # Ctrl-C
    assert p.wait(30) == 0
    t.join(5)
    text = "".join(lines)
    assert sum("HEARTBEAT" in ln for ln in lines) >= 2, text
    assert "offline (shutdown)" in text, text
    assert (tmp_path / "demo" / "node.log").stat().st_size > 0
    assert "media relay at rtsp://" in text, text  # live view is part of `make run`
    assert not (tmp_path / "station" / "relay.json").exists()  # the relay stopped with the demo


def test_fleet_view_lists_a_running_node(tmp_path, broker, capsys):
    import dataclasses

    from station.cli import main as station

    cfg = small_config(tmp_path, broker.port)
    # a 1-day target so that this machine's free disk holds it (else a real "retention" fault)
    node = Node(cfg.replace(record=dataclasses.replace(cfg.record, max_age_days=1.0)))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        assert station(["fleet", "--port", str(broker.port), "--every", "0.5", "--seconds", "3"]) == 0
    finally:
        stop.set()
        th.join(20)
    out = capsys.readouterr().out
    last = out.strip().split("\n\n")[-1]
    assert "NODE" in last and "pole-9" in last
    row = next(line for line in last.splitlines() if line.startswith("pole-9"))
    assert " OK " in row, row
