"""The picamera2 backend's logic against the recorded stand-in (tests/hw_picamera2_standin.py).

The stand-in refuses the orders a real camera refuses (start before configure, capture while
stopped, leaked requests), so a wrong call order in the backend fails here.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from datetime import UTC, datetime

import av
import numpy as np
import pytest

from hw.camera.picamera2 import CameraTuning, Picamera2Source
from hw.overlay import TextOverlay
from node.clock import FakeClock
from tests.hw_picamera2_standin import Camera, bar_x, module

W, H, FPS = 640, 384, 10.0
LW, LH = 160, 96


def source(pc2, **kw) -> Picamera2Source:
    clock = kw.pop("clock", None) or FakeClock()
    args = {"bitrate_kbps": 800, "gop_s": 1.0, "hardware_encoder": True, "module": pc2,
            "max_frames": 25}
    args.update(kw)
    return Picamera2Source(W, H, FPS, (LW, LH), clock, **args)


def names(cam: Camera) -> list[str]:
    return [n for n, _ in cam.calls]


def decode(frames) -> list[np.ndarray]:
    dec = av.CodecContext.create("h264", "r")
    out = []
    for f in frames:
        for vf in dec.decode(av.Packet(f.packet.data)):
            out.append(vf.to_ndarray()[:H])
    return out + [vf.to_ndarray()[:H] for vf in dec.decode(None)]


def test_call_order_configuration_and_encoder_choice():
    pc2 = module()
    src = source(pc2)
    frames = list(src.frames())
    (cam,) = Camera.instances
    seq = names(cam)
    setup = [n for n in seq if n not in ("capture_request", "capture_request_job", "get_metadata",
                                         "make_array", "release")]
    assert setup == ["__init__", "create_video_configuration", "configure", "start_encoder",
                     "start", "stop", "stop_encoder", "close"]
    assert seq.count("capture_request") == seq.count("release") and cam.held == 0
    config = dict(cam.calls)["configure"][0]
    assert config["main"] == {"size": (W, H), "format": "YUV420"}
    assert config["lores"] == {"size": (LW, LH), "format": "YUV420"}
    assert config["controls"]["FrameDurationLimits"] == (100_000, 100_000)
    assert dict(cam.calls)["start_encoder"] == ("H264Encoder", "main")
    assert len(frames) == 25 and src.describe()["encoder"].startswith("H264Encoder")
    assert cam.closed and src.describe()["state"] == "closed"


def test_encoder_settings_and_pi5_software_encoder():
    pc2 = module()
    src = source(pc2, hardware_encoder=False, max_frames=3)
    captured = {}
    orig = pc2.encoders.LibavH264Encoder.__init__

    def spy(self, **kw):
        captured.update(kw)
        orig(self, **kw)

    pc2.encoders.LibavH264Encoder.__init__ = spy
    try:
        list(src.frames())
    finally:
        pc2.encoders.LibavH264Encoder.__init__ = orig
    assert dict(Camera.instances[0].calls)["start_encoder"] == ("LibavH264Encoder", "main")
    assert captured == {"bitrate": 800_000, "repeat": True, "iperiod": 10, "profile": "high"}
    assert "software" in src.describe()["encoder"]


@pytest.mark.parametrize("absolute", [False, True])
def test_packets_paired_with_lores_of_the_same_sensor_frame(absolute):
    pc2 = module()
    Camera.next_lag = 2  # the hardware encoder hands packets two frames late
    Camera.next_absolute = absolute  # stamps: time since the first frame (picamera2) or absolute
    clock = FakeClock()
    clock.advance(500.0)
    src = source(pc2, clock=clock, max_frames=20)
    frames = list(src.frames())
    assert [f.seq for f in frames] == list(range(len(frames))) and len(frames) >= 20
    assert all(f.main is None and f.packet is not None for f in frames)
    assert [f.seq for f in frames if f.packet.keyframe][:2] == [0, 10]
    # Each lores image is the sensor frame the packet encodes (bar in the same place).
    for i, f in enumerate(frames):
        assert f.meta["lores_fresh"], i
        bright = np.nonzero(f.lores.mean(axis=0) > 150)[0]
        assert abs(bright.mean() * (W // LW) - (bar_x(i, W) + 16)) <= 2 * (W // LW), i
    # Sensor timestamps mapped onto the monotonic clock: exact 100 ms spacing, origin = now.
    monos = [f.mono for f in frames]
    assert monos[0] == pytest.approx(500.0)
    assert np.allclose(np.diff(monos), 0.1)
    assert all(b.packet.pts - a.packet.pts == 9000 for a, b in itertools.pairwise(frames))
    # The stream decodes to the sensor's picture.
    pics = decode(frames)
    assert len(pics) == len(frames)
    bright = np.nonzero(pics[7].mean(axis=0) > 150)[0]
    assert abs(bright.mean() - (bar_x(7, W) + 16)) <= 3


def test_missed_captures_still_record_every_packet():
    pc2 = module()
    Camera.next_lag = 1
    Camera.next_missed = {3, 4}  # the capture thread was late: two lores images never came
    frames = list(source(pc2, max_frames=10).frames())
    assert [f.seq for f in frames] == list(range(10))  # no packet lost
    stale = [f.seq for f in frames if not f.meta["lores_fresh"]]
    assert stale == [3, 4]
    # A stale frame carries the newest older lores (frame 2's), never a newer one.
    assert np.array_equal(frames[3].lores, frames[2].lores)
    assert np.array_equal(frames[4].lores, frames[2].lores)


def test_stalled_camera_raises_and_is_closed():
    pc2 = module()
    Camera.next_stall_at = {6}
    src = source(pc2, max_frames=None, frame_timeout_s=0.5)
    from hw.camera.base import SourceError

    got = []
    with pytest.raises(SourceError, match=r"stalled: no frame for 0\.5 s"):
        for f in src.frames():
            got.append(f)
    cam = Camera.instances[0]
    assert ("wait_timeout", (0.5,)) in cam.calls and cam.closed and cam.held == 0
    d = src.describe()
    assert len(got) >= 5 and d["state"] == "closed" and "stalled" in d["last_error"]


def test_overlay_is_burned_into_main_only():
    pc2 = module()
    ov = TextOverlay("Pole 7", "Asia/Ho_Chi_Minh", position="top-left", scale=2, margin=4)
    clock = FakeClock(datetime(2026, 11, 22, 0, 5, 9, tzinfo=UTC))
    src = source(pc2, overlay=ov, clock=clock, max_frames=5)
    frames = list(src.frames())
    pic = decode(frames)[0]
    # White text in the encoded main stream's corner (the sensor ramp there is ≈50-60).
    assert (pic[4:40, 4:200] > 200).sum() > 200
    # The lores (analysis) image has no text: it is exactly the sensor's.
    from tests.hw_picamera2_standin import sensor_image

    expect = sensor_image(0, W, H)[:: H // LH, :: W // LW][:LH, :LW]
    assert np.array_equal(frames[0].lores, expect)
    assert ov.renders == 1 and src.describe()["overlay_errors"] == 0


def test_overlay_failure_is_counted_not_fatal():
    class Broken:
        def apply(self, *a):
            raise ValueError("boom")

    src = source(module(), overlay=Broken(), max_frames=4)
    assert len(list(src.frames())) >= 4
    assert src.describe()["overlay_errors"] >= 4


def test_day_night_tuning_controls():
    pc2 = module()
    src = source(pc2, max_frames=None)
    it = src.frames()
    next(it)
    src.apply_tuning(CameraTuning.night(max_exposure_us=200_000))
    src.set_night(False)  # the hook node.daynight calls
    src.close()
    list(it)
    sets = [args[0] for n, args in Camera.instances[0].calls if n == "set_controls"]
    assert sets == [
        {"FrameDurationLimits": (100_000, 200_000), "AeEnable": True, "Saturation": 0.0,
         "AwbEnable": False, "ColourGains": (1.0, 1.0)},
        {"FrameDurationLimits": (100_000, 100_000), "AeEnable": True, "Saturation": 1.0,
         "AwbEnable": True},
    ]
    assert not src.describe()["mono"]


def test_close_from_another_thread_stops_and_delivers_the_tail():
    pc2 = module()
    Camera.next_lag = 3
    src = source(pc2, max_frames=None)
    got = []
    for f in src.frames():
        got.append(f)
        if len(got) == 12:
            threading.Thread(target=src.close).start()
    cam = Camera.instances[0]
    assert cam.closed and cam.held == 0
    # Every frame the sensor captured was delivered: the encoder's lagging tail was drained.
    assert len(got) == cam.seq
    assert all(b.seq == a.seq + 1 for a, b in itertools.pairwise(got))


def test_packet_backlog_drops_oldest_and_flags_gap():
    src = source(module(), max_frames=None, max_pending=3)
    for i in range(6):
        src._push(b"\x00\x00\x00\x01\x65", i == 0, 1_000 + i)
    frames = list(src._drain({}, 0))
    assert [f.packet.pts for f in frames] == [round(t / 1e6 * 90_000) for t in (1003, 1004, 1005)]
    assert frames[0].meta["gap"] and "gap" not in frames[1].meta
    assert src.describe()["dropped_packets"] == 3


def test_standin_refuses_wrong_orders():
    pc2 = module()
    cam = pc2.Picamera2(0)
    with pytest.raises(RuntimeError, match="not been configured"):
        cam.start()
    cfg = cam.create_video_configuration(main={"size": (64, 64), "format": "YUV420"},
                                         lores={"size": (32, 32), "format": "YUV420"},
                                         controls={"FrameDurationLimits": (100_000, 100_000)},
                                         buffer_count=3)
    with pytest.raises(RuntimeError, match="stopped"):
        cam.capture_request()
    cam.configure(cfg)
    cam.start()
    with pytest.raises(RuntimeError, match="stopped before configuring"):
        cam.configure(cfg)
    r = cam.capture_request()
    cam.capture_request()
    with pytest.raises(RuntimeError, match="request leak"):
        cam.capture_request()
    r.release()
    with pytest.raises(RuntimeError, match="after release"):
        r.make_array("lores")
    with pytest.raises(RuntimeError, match="close while running"):
        cam.close()


def test_missing_library_is_a_clear_source_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a PC
    src = Picamera2Source(W, H, FPS, (LW, LH), FakeClock())
    from hw.camera.base import SourceError

    with pytest.raises(SourceError, match="python3-picamera2"):
        next(src.frames())



@pytest.mark.parametrize("lag", [0, 3])
def test_budget_rate_change_swaps_the_encoder_without_breaking_the_stream(lag):
    """The storage budget lowers the bitrate while recording: picamera2's encoder is swapped
    (bitrate and intra period are fixed in a running encoder), the new one starts with a
    keyframe, the sensor timeline continues, and every packet still decodes."""
    from hw.encode.rate import RateSettings

    pc2 = module()
    Camera.next_lag = lag
    try:
        src = source(pc2, max_frames=40)
        frames = []
        for f in src.frames():
            frames.append(f)
            if len(frames) == 17:
                src.set_rate(RateSettings(300, 2.0))
    finally:
        Camera.next_lag = 0
    (cam,) = Camera.instances
    seq = names(cam)
    assert seq.count("start_encoder") == 2 and seq.count("stop_encoder") == 2
    assert src.encoder_swaps == 1 and cam.encoder is None
    assert (src.bitrate_kbps, src.gop_s) == (300, 2.0)
    assert len(frames) == 40
    pts = [f.packet.pts for f in frames]
    step = round(90_000 / FPS)
    assert all(b - a == step for a, b in itertools.pairwise(pts)), pts
    keys = [i for i, f in enumerate(frames) if f.packet.keyframe]
    assert 0 in keys and any(17 <= k <= 17 + lag + 1 for k in keys), keys
    assert len(decode(frames)) == 40


@pytest.mark.parametrize("size", [(LW, LH), (96, 64)])
def test_the_lores_output_feeds_the_live_sub_stream(size):
    """On a Pi the node never sees main pixels: the ISP's lores YUV420 image (what the stand-in
    renders like the sensor's picture) is what the sub-stream encodes, scaled if need be."""
    from node.live.substream import SubStream

    pc2 = module()
    packets = []
    sub = SubStream(size[0], size[1], FPS, 150, 1.0, packets.append)
    sub.start()
    frames = []
    for f in source(pc2).frames():
        assert f.main is None and f.lores.shape == (LH, LW)
        assert f.meta["lores_yuv"].shape == (LH * 3 // 2, LW)
        frames.append(f)
        sub.offer(f)
        deadline = time.monotonic() + 10  # one at a time: nothing dropped, pictures in order
        while sub.frames < len(frames) and time.monotonic() < deadline:
            time.sleep(0.005)
    assert sub.stop(10) and not sub.error and sub.dropped == 0
    dec = av.CodecContext.create("h264", "r")
    pics = [vf for p in packets for vf in dec.decode(av.Packet(p.data))] + list(dec.decode(None))
    assert len(pics) >= 20 and {(p.width, p.height) for p in pics} == {size}
    assert len(pics) == len(frames)
    if size == (LW, LH):  # the picture is the sensor's (the stand-in's moving bar), frame for frame
        for pic, f in zip(pics, frames, strict=True):
            assert np.abs(pic.to_ndarray()[:LH].astype(int) - f.lores.astype(int)).mean() < 12
