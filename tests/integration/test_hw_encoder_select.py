"""Encoder selection with the real PyAV: every candidate is probed by encoding a test frame.

On a CI machine no hardware encoder works, so each hardware candidate must be rejected with a
reason and libx264 chosen; a forced candidate that cannot open fails start-up with a clear
message, or falls back when the config says so.
"""

from __future__ import annotations

import io
import time

import av
import numpy as np
import pytest

from hw.encode.base import EncoderError
from hw.encode.libav import has_sps
from hw.encode.select import (
    HARDWARE_ORDER,
    default_candidates,
    h264_encoders,
    open_encoder,
    probe_encoder,
)
from hw.media import TIME_BASE, Frame, StreamInfo

STREAM = StreamInfo("h264", 640, 360, 10.0)


def _frames(n: int, w: int = 640, h: int = 360):
    from datetime import UTC, datetime

    for i in range(n):
        y = np.full((h, w), 60, np.uint8)
        y[:, (i * 7) % (w - 40):(i * 7) % (w - 40) + 40] = 200
        main = np.concatenate([y, np.full((h // 2, w), 128, np.uint8)])
        yield Frame(i, i / 10.0, datetime(2026, 1, 1, tzinfo=UTC), w, h, main, y[::4, ::4])


def test_default_order_puts_hardware_first_and_libx264_last():
    listed = h264_encoders()
    assert "libx264" in listed
    names = default_candidates()
    assert names[-1] == "libx264" and names.count("libx264") == 1
    hw = [n for n in names if n in HARDWARE_ORDER]
    assert hw == [n for n in HARDWARE_ORDER if n in listed]  # known order kept
    assert default_candidates(source_encoded=True)[0] == "source"
    assert default_candidates(available=["h264_foo", "libx264"]) == ["h264_foo", "libx264"]


def test_hardware_candidates_rejected_libx264_chosen_and_works():
    # libx264's profile is a ceiling: ultrafast uses no CABAC (Constrained Baseline), so ask
    # for a preset that would use High tools and check the cap holds.
    enc, report = open_encoder(None, STREAM, bitrate_kbps=800, gop_s=1.0, profile="main",
                               preset="veryfast")
    try:
        assert report.chosen == "libx264" and not report.forced
        rejected = report.rejected
        hw_listed = [n for n in HARDWARE_ORDER if n in h264_encoders()]
        assert "h264_v4l2m2m" in hw_listed  # the PyAV wheels list it everywhere
        assert set(rejected) == set(hw_listed)
        assert all(reason for reason in rejected.values())
        # The V4L2 M2M reason comes from FFmpeg's own log, not just an errno.
        assert "device" in rejected["h264_v4l2m2m"].lower()
        d = report.as_dict()
        assert d["attempts"][-1] == {"name": "libx264", "ok": True, "reason": "",
                                     "probe_ms": d["attempts"][-1]["probe_ms"]}
        packets = []
        for f in _frames(25):
            packets += enc.encode(f)
        packets += enc.flush()
    finally:
        enc.close()
    assert len(packets) == 25
    keys = [p.seq for p in packets if p.keyframe]
    assert keys == [0, 10, 20]  # GOP = 1 s at 10 fps
    assert all(has_sps(p.data) for p in packets if p.keyframe)
    # The stream decodes, with the requested profile.
    dec = av.CodecContext.create("h264", "r")
    n = 0
    for p in packets:
        n += len(dec.decode(av.Packet(p.data)))
    n += len(dec.decode(None))
    assert n == 25 and dec.profile == "Main"


def test_forced_candidate_that_cannot_open_fails_clearly():
    with pytest.raises(EncoderError) as err:
        open_encoder(["h264_v4l2m2m"], STREAM, bitrate_kbps=800, gop_s=1.0, fallback="fail")
    msg = str(err.value)
    assert "no H.264 encoder could be opened" in msg and "h264_v4l2m2m" in msg
    assert "encoder.fallback" in msg and "libx264" not in msg.split("—")[1].split("(")[0]


def test_forced_candidate_falls_back_when_configured():
    enc, report = open_encoder(["h264_v4l2m2m"], STREAM, bitrate_kbps=800, gop_s=1.0,
                               fallback="libx264")
    enc.close()
    assert report.forced and report.chosen == "libx264"
    assert [a.name for a in report.attempts] == ["h264_v4l2m2m", "libx264"]


def test_unknown_forced_name_is_reported():
    with pytest.raises(EncoderError, match=r"h264_magic: not an H\.264 encoder in this FFmpeg build"):
        open_encoder(["h264_magic"], STREAM, bitrate_kbps=800, gop_s=1.0, fallback="fail")


def test_source_candidate_is_passthrough_only_for_encoded_sources():
    enc, report = open_encoder(None, STREAM, bitrate_kbps=800, gop_s=1.0, source_encoded=True)
    assert report.chosen == "source" and enc.name == "passthrough"
    enc2, report2 = open_encoder(["source"], STREAM, bitrate_kbps=800, gop_s=1.0)
    enc2.close()
    assert report2.rejected == {"source": "the camera source delivers raw frames"}
    assert report2.chosen == "libx264"


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="profile"):
        open_encoder(None, STREAM, bitrate_kbps=800, gop_s=1.0, profile="extreme")
    with pytest.raises(ValueError, match="fallback"):
        open_encoder(None, STREAM, bitrate_kbps=800, gop_s=1.0, fallback="maybe")


class _HangingEncoder:
    name = "hangs"

    def start(self, stream):
        time.sleep(2.0)

    def close(self):
        pass


class _SilentEncoder:
    """Opens, but never outputs a packet (a broken driver)."""

    name = "silent"

    def start(self, stream):
        return stream

    def encode(self, frame):
        return []

    def flush(self):
        return []

    def close(self):
        pass


def test_probe_timeout_and_silent_encoder_are_rejected():
    ok, reason = probe_encoder(_HangingEncoder(), STREAM, timeout_s=0.2)
    assert not ok and "did not finish within 0.2 s" in reason
    ok, reason = probe_encoder(_SilentEncoder(), STREAM)
    assert not ok and reason == "no packet out of 8 test frames"


def test_injected_factory_order_and_first_passing_wins():
    from hw.encode.libav import LibavEncoder

    built = []

    def factory(name):
        built.append(name)
        return _SilentEncoder() if name == "bad" else LibavEncoder(500, 1.0, codec="libx264")

    enc, report = open_encoder(["bad", "libx264"], STREAM, bitrate_kbps=500, gop_s=1.0,
                               factory=factory)
    enc.close()
    assert report.chosen == "libx264" and built == ["bad", "libx264", "libx264"]
    assert report.rejected == {"bad": "no packet out of 8 test frames"}


def test_output_muxes_into_mpegts():
    enc, _ = open_encoder(None, STREAM, bitrate_kbps=800, gop_s=1.0)
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mpegts")
    st = out.add_stream("h264", rate=10)
    st.width, st.height = 640, 360
    for f in _frames(12):
        for p in enc.encode(f):
            pkt = av.Packet(p.data)
            pkt.pts, pkt.dts, pkt.stream = p.pts, p.dts, st
            pkt.time_base = TIME_BASE
            out.mux(pkt)
    out.close()
    enc.close()
    buf.seek(0)
    with av.open(buf) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12
