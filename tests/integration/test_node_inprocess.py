"""The node wired in-process: systemd notify, camera faults reported, queues under pressure."""

from __future__ import annotations

import socket
import threading
import time

from node.app import Node
from node.config import config_from_dict
from node.sdnotify import Notifier
from tests.stationproc import wait_until


def small_config(tmp_path, port: int, **camera):
    return config_from_dict({
        "node": {"id": "pole-9"},
        "camera": {"source": "synthetic", "width": 320, "height": 240, "fps": 10.0,
                   "lores_width": 160, "lores_height": 120, **camera},
        "encoder": {"gop_s": 1.0, "bitrate_kbps": 300},
        "storage": {"path": str(tmp_path / "rec"), "segment_s": 2.0},
        "mqtt": {"port": port, "heartbeat_s": 0.3, "reconnect_max_s": 1.0},
    })


def test_ready_and_watchdog_reach_systemd_socket(tmp_path, broker):
    sock_path = tmp_path / "notify"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(30)  # READY comes at the end of the node's start (probes, devices, link)
    node = Node(small_config(tmp_path, broker.port),
                notifier=Notifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        msgs = [srv.recv(256).decode() for _ in range(3)]
    finally:
        stop.set()
        th.join(20)
        srv.close()
    assert msgs[0].startswith("READY=1")
    assert "WATCHDOG=1" in msgs[1:]
    assert node.notifier.sent[-1] == "STOPPING=1"


def test_vanished_camera_is_reported_and_retried(tmp_path, broker, subscriber_factory):
    clip = tmp_path / "cam.mp4"
    # a real short H.264 file as the "camera", then it vanishes
    import av
    import numpy as np

    with av.open(str(clip), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for i in range(20):
            f = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i * 10, np.uint8), format="rgb24")
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    cfg = small_config(tmp_path, broker.port, source=str(clip), loop=True)
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-9/heartbeat")
    node = Node(cfg)
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        assert live.wait_for(lambda s: any(h["frames_in"] > 0 for h in s.json("heartbeat")), 20)
        clip.unlink()
        assert live.wait_for(
            lambda s: "camera" in s.json("heartbeat")[-1]["faults"], 20), live.json("heartbeat")[-1]
        fault = live.json("heartbeat")[-1]["faults"]["camera"]
        assert ("cannot be opened" in fault and "No such file" in fault) or "file not found" in fault
        assert th.is_alive()  # the node keeps running and keeps telling the station
    finally:
        stop.set()
        th.join(20)
    assert not th.is_alive()


def test_slow_encoder_drops_oldest_frames_and_counts(tmp_path, broker):
    class SlowEncoder:
        name = "slow"

        def start(self, stream):
            return stream

        def encode(self, frame):
            time.sleep(0.05)
            return []

        def flush(self):
            return []

        def close(self):
            pass

    cfg = small_config(tmp_path, broker.port, fps=60.0, realtime=False)
    node = Node(cfg, encoder=SlowEncoder())
    node.start()
    # frames arrive faster than the encoder takes them
    wait_until(lambda: node.heartbeat()["frames_dropped"] > 0, 20, 0.1)
    hb = node.heartbeat()
    node.stop()
    assert hb["frames_dropped"] > 0
    assert hb["frames_in"] > node.pipeline.counters.frames_encoded


class HangingCamera:
    """Delivers a few frames, then hangs inside frames() like a stalled USB camera driver."""

    encoded = False
    name = "hanging"

    def __init__(self, frames) -> None:
        self._frames = frames
        self._closed = threading.Event()
        self.width, self.height, self.fps = 320, 240, 10.0

    def frames(self):
        yield from self._frames
        self._closed.wait()  # stuck until the node closes it

    def close(self) -> None:
        self._closed.set()

    def describe(self):
        return {"backend": "hanging"}


def test_hung_camera_is_a_fault_then_stops_the_watchdog(tmp_path, broker):
    from hw.camera.synthetic import SyntheticSource
    from node.clock import FakeClock
    from node.mainloop import STALL_RESTART_S

    clock = FakeClock()
    frames = list(SyntheticSource(320, 240, 10.0, (160, 120), clock, realtime=False, max_frames=5).frames())
    cam = HangingCamera(frames)
    node = Node(small_config(tmp_path, broker.port), clock=clock, source=cam)
    node.start()
    try:
        deadline = time.monotonic() + 10
        while node.pipeline.counters.frames_encoded < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.healthy() and "camera" not in node.diagnostics.faults()
        clock.advance(30)
        assert "no frame from the camera for 30 s" in node.diagnostics.faults()["camera"]
        assert node.healthy()  # reported first; the restart comes later
        clock.advance(STALL_RESTART_S)
        assert not node.healthy()  # the watchdog is no longer fed: systemd restarts the node
    finally:
        node.stop()


def test_card_too_small_for_target_is_reported(tmp_path, broker):
    cfg = small_config(tmp_path, broker.port)
    import dataclasses

    cfg = cfg.replace(record=dataclasses.replace(cfg.record, max_age_days=3650.0))
    node = Node(cfg)
    node.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and node.recorder.health()["segments_closed"] < 1:
            time.sleep(0.1)
        hb = node.heartbeat()
        assert isinstance(hb["retention_days"], int | float)
        # the budget gave up quality down to its floor first, then says what is short
        assert "of 3650 days" in hb["faults"]["retention"]
        assert "even the quality floor" in hb["faults"]["retention"]
    finally:
        node.stop()


def test_unreadable_password_file_still_records_and_says_why(tmp_path, broker):
    cfg = small_config(tmp_path, broker.port)
    import dataclasses

    cfg = cfg.replace(mqtt=dataclasses.replace(cfg.mqtt, password_file=str(tmp_path / "missing.pw")))
    node = Node(cfg)
    node.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and node.pipeline.counters.frames_encoded < 10:
            time.sleep(0.1)
        assert node.pipeline.counters.frames_encoded >= 10
        assert "missing.pw" in node.diagnostics.faults()["link"]
        assert not node.link.connected
    finally:
        node.stop()


def test_a_source_that_ends_is_a_fault_and_ends_the_run(tmp_path, broker, subscriber_factory, shared_dir):
    """Issue 8/27: a file with loop = false must not leave a node that looks healthy at fps 0:
    the last heartbeat says the source ended, and the run ends by itself (offline published)."""
    clip = shared_dir / "media" / "videos" / "worker-zone-detection.mp4"  # 71 frames
    cfg = small_config(tmp_path, broker.port, source=str(clip), loop=False, realtime=False)
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-9/#")
    node = Node(cfg)
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,), name="node-run")
    th.start()
    th.join(60)
    ended_by_itself = not th.is_alive()
    stop.set()
    th.join(20)
    assert ended_by_itself, "the run kept going after its source ended"
    # offline comes after the last heartbeat on the same connection: once it is here, so is that
    assert live.wait_for(lambda s: s.json("status")[-1]["state"] == "offline", 10)
    last = live.json("heartbeat")[-1]
    assert "source ended after 71 frames" in last["faults"]["camera"], last["faults"]
    assert node.recorder.health()["segments_closed"] >= 1  # what it gave was recorded
