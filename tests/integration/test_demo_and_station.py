"""The README's first command: `camnode-demo` prints heartbeats from the station view."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from node.app import Node
from station.watch import Watcher
from tests.integration.test_node_inprocess import small_config
from tests.stationproc import wait_until


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
    wait_until(lambda: "offline (shutdown)" in out.getvalue(), 10, 0.1)  # on its way to the watcher
    w.stop()
    text = out.getvalue()
    assert "pole-9" in text and "STATUS    online" in text
    assert text.count("HEARTBEAT") >= 2 and "enc libx264" in text
    assert "STATUS    offline (shutdown)" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdlines(root: int) -> list[str]:
    """The command lines of ``root`` and every process under it (what ``ps`` shows anyone)."""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()  # noqa: SIM115
            except OSError:
                continue
            parents[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    out = []
    for pid in tree:
        try:
            out.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode())  # noqa: SIM115
        except OSError:
            continue
    return out


def test_demo_runs_until_interrupted(tmp_path):
    from station.live.credentials import load_secret
    from station.live.janus import token_key

    p = subprocess.Popen([sys.executable, "-m", "demo", "--storage", str(tmp_path / "demo"),
                          "--heartbeat-s", "1", "--console-listen", f"127.0.0.1:{_free_port()}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env={**os.environ, "CAMNODE_STATION_DIR": str(tmp_path / "station")})
    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.extend(p.stdout))
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (sum("HEARTBEAT" in ln for ln in lines) < 2
                                           or not any("web console on" in ln for ln in lines)):
        time.sleep(0.2)
    # the key that signs viewer tokens is in the station's 0600 file, on no process's command line
    key = token_key(load_secret(tmp_path / "station"))
    cmdlines = _cmdlines(p.pid)
    assert any("console" in c and "--live-url" in c for c in cmdlines), cmdlines
    assert not [c for c in cmdlines if key in c], "the live key is on a command line"
    p.send_signal(signal.SIGINT)  # Ctrl-C
    assert p.wait(30) == 0
    t.join(5)
    text = "".join(lines)
    assert sum("HEARTBEAT" in ln for ln in lines) >= 2, text
    assert "offline (shutdown)" in text, text
    assert (tmp_path / "demo" / "node.log").stat().st_size > 0
    assert "media relay at rtsp://" in text, text  # live view is part of `make run`
    assert not (tmp_path / "station" / "relay.json").exists()  # the relay stopped with the demo


def test_demo_exits_1_when_the_console_cannot_listen(tmp_path):
    """Port taken: one line on stderr, exit 1, and no URL or demo passwords printed."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "demo", "--storage", str(tmp_path / "demo"),
                            "--console-listen", f"127.0.0.1:{port}"], capture_output=True, text=True,
                           timeout=180, env={**os.environ, "CAMNODE_STATION_DIR": str(tmp_path / "station")})
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [f"camnode-demo: web console cannot listen on 127.0.0.1:{port}: "
                                             "the port is in use (--console-listen)"], r.stderr
    assert "web console on" not in r.stdout and "log in as" not in r.stdout, r.stdout


def test_demo_exits_1_when_the_node_crashes(tmp_path):
    r = subprocess.run([sys.executable, "-m", "demo", "--storage", str(tmp_path / "demo"),
                        "--source", str(tmp_path / "no-such-clip.mp4"),
                        "--console-listen", f"127.0.0.1:{_free_port()}"], capture_output=True, text=True,
                       timeout=180, env={**os.environ, "CAMNODE_STATION_DIR": str(tmp_path / "station")})
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("camnode-demo: node exited with code 2: "), r.stderr
    assert "camera.source" in lines[0], lines


def test_fleet_view_lists_a_running_node(tmp_path, broker, capsys):
    import dataclasses

    from station.cli import main as station

    cfg = small_config(tmp_path, broker.port)
    # a 1-day target so that this machine's free disk holds it (else a real "retention" fault);
    # a 1 s heartbeat: "silent" is 3 periods without one, 0.9 s at the suite's 0.3 s (a loaded
    # machine's hiccup)
    node = Node(cfg.replace(record=dataclasses.replace(cfg.record, max_age_days=1.0),
                            mqtt=dataclasses.replace(cfg.mqtt, heartbeat_s=1.0)))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        assert node.link.wait_connected(20)
        # recording (the fleet's OK) before the fleet view looks
        wait_until(lambda: node.pipeline.counters.frames_encoded > 0, 20, 0.1)
        assert station(["fleet", "--port", str(broker.port), "--every", "0.5", "--seconds", "4"]) == 0
    finally:
        stop.set()
        th.join(20)
    out = capsys.readouterr().out
    last = out.strip().split("\n\n")[-1]
    assert "NODE" in last and "pole-9" in last
    row = next(line for line in last.splitlines() if line.startswith("pole-9"))
    assert " OK " in row, row


def test_make_run_shows_a_person_event_with_its_snapshot(tmp_path, shared_dir):
    """Issue 8/19: what `make run` runs on a fresh clone with ../shared present (real footage,
    the real model): a legend, then a person event whose snapshot is saved, in arrival order."""
    import av

    video = shared_dir / "media" / "videos" / "one-by-one-person-detection.mp4"
    storage = tmp_path / "demo"
    p = subprocess.Popen([sys.executable, "-m", "demo", "--storage", str(storage),
                          "--model-dir", str(shared_dir / "models"), "--source", str(video)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.extend(p.stdout), name="demo-output")
    t.start()
    began = time.monotonic()

    def shown() -> bool:
        return (any("EVENT     start  person" in ln for ln in lines)
                and any("SNAPSHOT" in ln and " saved " in ln for ln in lines))

    deadline = began + 120  # the first visitor walks in 6 s into the clip; a loaded CI is slow
    while time.monotonic() < deadline and not shown():
        time.sleep(0.2)
    took = time.monotonic() - began
    p.send_signal(signal.SIGINT)
    assert p.wait(30) == 0
    t.join(5)
    text = "".join(lines)
    assert shown(), text
    print(f"person event and snapshot shown {took:.1f} s after `camnode-demo` started")
    assert "legend: HEARTBEAT fps <captured>/<encoded>" in text and "faults:" in text
    saved = next(ln for ln in lines if "SNAPSHOT" in ln and " saved " in ln).split(" saved ")[1].strip()
    with av.open(saved) as c:  # a real JPEG picture of the event
        frame = next(c.decode(video=0))
    assert frame.width >= 300 and frame.height >= 150
    event_id = next(ln for ln in lines if "EVENT     start  person" in ln).split(" id ")[1].strip()
    assert saved.endswith(f"demo-node/{event_id}.jpg")
    arrivals = [ln.split()[0] for ln in lines if " EVENT " in ln or " SNAPSHOT " in ln]
    assert arrivals == sorted(arrivals)  # printed in the order they arrived


def test_watch_prints_events_in_arrival_order(tmp_path):
    """An object event starts at its first sighting (confirmed later): its line, printed after a
    motion event that started later, still reads in order — arrival time first."""
    from datetime import UTC, datetime

    from node.clock import FakeClock
    from node.link.topics import encode

    clock = FakeClock(datetime(2026, 11, 22, 18, 0, 10, tzinfo=UTC))
    out = io.StringIO()
    w = Watcher("127.0.0.1", 1, "camnode", out=out, clock=clock, snapshot_dir=tmp_path)
    msgs = [("event", {"id": "m1", "kind": "motion", "phase": "start", "label": "motion",
                       "start": "2026-11-22T18:00:09.000Z"}),
            ("event", {"id": "o2", "kind": "object", "phase": "start", "label": "person",
                       "score": 0.8, "start": "2026-11-22T18:00:08.500Z"}),
            ("snapshot/o2", b"\xff\xd8 jpeg"),
            ("event", {"id": "o2", "kind": "object", "phase": "end", "label": "person", "score": 0.8,
                       "start": "2026-11-22T18:00:08.500Z", "end": "2026-11-22T18:00:14.000Z",
                       "duration_s": 5.5})]
    for leaf, payload in msgs:
        data = payload if isinstance(payload, bytes) else encode(payload)
        w._on_message(type("M", (), {"topic": f"camnode/pole-9/{leaf}", "payload": data})())
        clock.advance(1)
    lines = out.getvalue().splitlines()
    assert [ln.split()[0] for ln in lines] == [
        "2026-11-22T18:00:10.000Z", "2026-11-22T18:00:11.000Z", "2026-11-22T18:00:12.000Z",
        "2026-11-22T18:00:13.000Z"]
    assert "(start 2026-11-22T18:00:08.500Z)" in lines[1]
    assert "(start 2026-11-22T18:00:08.500Z end 2026-11-22T18:00:14.000Z)" in lines[3]
    assert (tmp_path / "pole-9" / "o2.jpg").read_bytes() == b"\xff\xd8 jpeg"
    assert f"saved {tmp_path / 'pole-9' / 'o2.jpg'}" in lines[2]
