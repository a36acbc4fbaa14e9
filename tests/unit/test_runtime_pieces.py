"""Queues, the systemd notify protocol, the synthetic scene, the encoder seam."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from hw.camera.synthetic import SceneScript, SyntheticSource, Walker
from hw.encode.libav import LibavEncoder
from hw.media import StreamInfo
from node.clock import FakeClock
from node.queues import Closed, DropOldestQueue
from node.sdnotify import Notifier


def test_queue_drops_oldest_and_counts():
    q: DropOldestQueue[int] = DropOldestQueue(3)
    for i in range(5):
        q.put(i)
    assert q.dropped == 2
    assert [q.get(0), q.get(0), q.get(0)] == [2, 3, 4]
    assert q.get(0) is None
    q.close()
    with pytest.raises(Closed):
        q.get(0)


def test_queue_get_wakes_on_put():
    q: DropOldestQueue[str] = DropOldestQueue(2)
    got = []
    th = threading.Thread(target=lambda: got.append(q.get(5)))
    th.start()
    q.put("frame")
    th.join(5)
    assert got == ["frame"]


@pytest.mark.parametrize("abstract", [False, True])
def test_sdnotify_speaks_the_socket_protocol(tmp_path, abstract):
    name = f"@camnode-test-{id(tmp_path)}" if abstract else str(tmp_path / "notify")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind("\0" + name[1:] if abstract else name)
    srv.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "20000000"})
    assert n.watchdog_s == 20.0
    assert n.ready("recording")
    assert n.watchdog()
    assert srv.recv(256) == b"READY=1\nSTATUS=recording"
    assert srv.recv(256) == b"WATCHDOG=1"
    srv.close()


def test_sdnotify_without_systemd_is_silent():
    n = Notifier({})
    assert not n.enabled and not n.ready() and n.watchdog_s is None


def _scene(**kw) -> SyntheticSource:
    return SyntheticSource(320, 240, 10.0, (160, 120), FakeClock(), realtime=False, **kw)


def test_synthetic_scene_is_deterministic_and_walkers_move():
    script = SceneScript(walkers=[Walker(enter_s=0.5, speed=0.5)])
    a, b = _scene(script=script), _scene(script=script)
    assert np.array_equal(a.render(12), b.render(12))
    empty = _scene(script=SceneScript())
    diff = np.abs(a.render(12)[:240].astype(int) - empty.render(12)[:240].astype(int))
    assert (diff > 40).sum() > 200  # the walker is there
    assert np.array_equal(a.render(0), empty.render(0))  # and not before it enters


def test_synthetic_night_is_darker_and_grey():
    s = _scene(script=SceneScript())
    day = s.render(0)
    s.set_illumination(0.25)
    night = s.render(0)
    assert night[:240].mean() < day[:240].mean() * 0.4
    assert (night[240:] == 128).all()


def test_synthetic_frames_carry_lores_and_fake_time():
    clock = FakeClock()
    src = SyntheticSource(320, 240, 10.0, (160, 120), clock, realtime=True, max_frames=5)
    frames = list(src.frames())
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    assert frames[-1].mono == pytest.approx(0.4)  # paced on the injected clock, no real sleep
    assert frames[0].lores.shape == (120, 160) and frames[0].main.shape == (360, 320)


def test_libx264_keyframes_at_gop_and_annexb():
    src = _scene(max_frames=30)
    enc = LibavEncoder(300, 1.0)
    enc.start(StreamInfo("h264", 320, 240, 10.0))
    packets = [p for f in src.frames() for p in enc.encode(f)] + enc.flush()
    assert len(packets) == 30
    assert [i for i, p in enumerate(packets) if p.keyframe] == [0, 10, 20]
    assert all(p.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) for p in packets)
    assert packets[1].pts - packets[0].pts == 9000  # 1/10 s in the 90 kHz time base


def test_watchdog_notifier_keeps_a_bounded_memory(tmp_path):
    """Issue 8/16: one WATCHDOG=1 a second must not grow a list by 86,400 entries a day."""
    import socket
    import threading

    from node.sdnotify import RECENT, Notifier

    path = tmp_path / "notify"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(path))
    got: list[int] = []

    def drain() -> None:
        n = 0
        srv.settimeout(5)
        while n < 3001:
            srv.recv(64)
            n += 1
        got.append(n)

    th = threading.Thread(target=drain, name="notify-drain")
    th.start()
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
    for _ in range(3000):
        assert n.watchdog()
    assert n.stopping()
    th.join(10)
    srv.close()
    assert got == [3001] and n.count == 3001
    assert len(n.sent) == RECENT and n.sent[-1] == "STOPPING=1"


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-22T18:00:00Z", "2026-11-22T18:00:00+00:00"),
    ("2026-11-23T01:00:00+07:00", "2026-11-22T18:00:00+00:00"),  # a Vietnamese user's 01:00
    ("2026-11-22 18:00:00+00:00", "2026-11-22T18:00:00+00:00"),
    ("2026-11-22T18:00:00", "no time zone"),  # never guessed (UTC vs +07:00: 7 hours)
    ("2026-11-22", "no time zone"),
    ("yesterday", "not an ISO 8601 time"),
])
def test_one_time_rule_for_people(text, expected):
    """Issue 8/10: one rule everywhere: a time without a zone is refused, never read as UTC."""
    from node.link.topics import parse_time

    try:
        got = parse_time(text).isoformat()
    except ValueError as exc:
        got = str(exc)
    assert expected in got


def test_camnode_clip_refuses_a_time_without_zone(tmp_path, capsys):
    from node.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["clip", "--start", "2026-11-22T18:00:00", "--end", "2026-11-22T18:05:00Z",
              "-o", str(tmp_path / "c.mp4")])
    assert stop.value.code == 2
    assert "has no time zone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["clip", "--help"])
    assert "a time without one is refused" in " ".join(capsys.readouterr().out.split())
