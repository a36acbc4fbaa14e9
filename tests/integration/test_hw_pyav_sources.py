"""PyAV sources beyond RTSP: V4L2 options and a missing device, file passthrough looping."""

from __future__ import annotations

import itertools

import pytest

from hw.camera.base import SourceError
from hw.camera.pyav import PyAVSource, open_args, v4l2_options
from node.clock import FakeClock


def test_v4l2_asks_for_size_rate_and_format():
    assert open_args("/dev/video0") == ("/dev/video0", {"format": "v4l2"})
    assert v4l2_options(1280, 720, 15.0, "mjpeg") == {
        "video_size": "1280x720", "framerate": "15", "input_format": "mjpeg"}
    assert v4l2_options(640, 480, 29.97, None) == {"video_size": "640x480", "framerate": "29.97"}


def test_missing_v4l2_device_retries_then_reports():
    clock = FakeClock()
    src = PyAVSource("/dev/video63", 640, 480, 15, (160, 120), clock, max_retries=2,
                     backoff_s=(1.0, 8.0), v4l2_format="mjpeg")
    with pytest.raises(SourceError, match="giving up after 3 failed attempts"):
        list(src.frames())
    d = src.describe()
    assert d["failed_attempts"] == 3 and "/dev/video63" in d["last_error"]
    assert clock.monotonic() == pytest.approx(1.0 + 2.0)


def test_file_passthrough_loops_with_discontinuity_and_rising_pts(shared_dir):
    clip = shared_dir / "media/videos/car-detection.mp4"  # 377 frames, no B-frames
    src = PyAVSource(str(clip), 768, 432, 12.5, (96, 54), FakeClock(), realtime=False,
                     loop=True, passthrough=True, max_frames=400)
    frames = list(src.frames())
    assert len(frames) == 400 and src.describe()["opens"] == 2
    jump = [f.seq for f in frames if f.meta.get("discontinuity")]
    assert jump == [377] and frames[377].packet.keyframe
    pts = [f.packet.pts for f in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[377] - pts[376] == 7200  # one frame period at 12.5 fps, no gap, no overlap
