"""20 live sessions on an in-process node — stopped, expired, cut by a dying relay — leave no
thread, file descriptor or memory behind, and recording never loses a frame meanwhile."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from node.app import Node
from node.config import config_from_dict
from station.live.credentials import load_secret, node_password
from station.live.relay import Relay

NODE = "pole-3"


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait(pred, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def relay(tmp_path):
    r = Relay(tmp_path / "station", [NODE], port=0)
    r.start()
    yield r
    r.stop()


def test_twenty_sessions_leave_nothing_behind_and_never_disturb_recording(tmp_path, broker, relay):
    pw = tmp_path / "pw"
    pw.write_text(node_password(load_secret(relay.state_dir), NODE))
    cfg = config_from_dict({
        "node": {"id": NODE},
        "camera": {"source": "synthetic", "width": 320, "height": 240, "fps": 10.0,
                   "lores_width": 160, "lores_height": 120},
        "encoder": {"gop_s": 1.0, "bitrate_kbps": 300},
        "storage": {"path": str(tmp_path / "rec"), "segment_s": 2.0},
        "mqtt": {"port": broker.port, "heartbeat_s": 0.3, "reconnect_max_s": 1.0},
        "live": {"relay": relay.rtsp_base, "password_file": str(pw), "sub_width": 160, "sub_height": 96,
                 "sub_fps": 5.0, "timeout_s": 3.0},
    })
    node = Node(cfg, analysis=False)
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,), name="test-node")
    th.start()
    live = node.live
    try:
        assert wait(lambda: live.tap.stream is not None)

        def session(i: int) -> None:
            stream = "main" if i % 2 else "sub"
            kind = i % 4
            before = live.usage.snapshot()["bytes_today"]
            minutes = 0.02 if kind == 2 else 1.0  # 1.2 s: ends by itself
            live.command({"stream": stream, "minutes": minutes})
            assert wait(lambda: live.usage.snapshot()["bytes_today"] > before), live.status()
            if kind in (0, 1):
                live.command({"stop": True})
            elif kind == 3:  # the relay dies under the push: the push ends; the relay is restarted
                os.kill(relay._proc.pid, signal.SIGKILL)
            assert wait(lambda: live.status()["state"] == "off" and live.threads_alive() == 0), live.status()
            if kind == 3:
                assert wait(relay.alive)
                assert wait(lambda: live.last_end.get(stream, "").startswith("push ended"))

        session(0)
        session(1)  # warm-up: libx264, PyAV and the RTSP muxer loaded once
        threads, files, mem = threading.active_count(), fds(), rss_mb()
        for i in range(2, 20):
            session(i)
        assert wait(lambda: threading.active_count() <= threads), [t.name for t in threading.enumerate()]
        assert wait(lambda: fds() <= files + 2), fds()  # the last session's sockets closing
        assert rss_mb() < mem + 40
        assert live.sessions_started == 20
        assert live.last_end["sub"] == "time is up"  # session 18 (kind 2) was the last sub
        c = node.pipeline.counters
        assert node.pipeline.encode_q.dropped == 0
        assert node.recorder.health()["dropped_packets"] == 0
        assert wait(lambda: c.frames_encoded >= c.frames_in - 2)  # (a frame or two in the queue)
    finally:
        stop.set()
        th.join(30)
