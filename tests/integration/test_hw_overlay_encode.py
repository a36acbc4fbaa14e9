"""The on-screen text survives H.264: stamped into the synthetic camera's frames, encoded by
the probed encoder, decoded back — the glyphs are where the overlay drew them."""

from __future__ import annotations

from datetime import UTC, datetime

import av
import numpy as np

from hw.camera.synthetic import SyntheticSource
from hw.encode.select import open_encoder
from hw.media import StreamInfo
from hw.overlay import TextOverlay, render_mask
from node.clock import FakeClock


def test_text_is_burned_into_the_encoded_stream():
    w, h = 640, 360
    clock = FakeClock(datetime(2026, 11, 22, 0, 5, 9, tzinfo=UTC))
    src = SyntheticSource(w, h, 10.0, (160, 90), clock, realtime=False, max_frames=12)
    ov = TextOverlay("Pole 7", "Asia/Ho_Chi_Minh", position="bottom-right", scale=2, margin=6)
    enc, report = open_encoder(None, StreamInfo("h264", w, h, 10.0), bitrate_kbps=1500, gop_s=1.0)
    packets, lores_before = [], []
    for f in src.frames():
        lores_before.append(f.lores.copy())
        ov.apply(f.main, f.width, f.height, f.utc, clock.synced())
        assert np.array_equal(f.lores, lores_before[-1])  # analysis image untouched
        packets += enc.encode(f)
    packets += enc.flush()
    enc.close()
    dec = av.CodecContext.create("h264", "r")
    pics = [vf.to_ndarray()[:h] for p in packets for vf in dec.decode(av.Packet(p.data))]
    assert len(pics) == 12
    glyph, ring = render_mask(list(ov.lines(clock.utc())), 2)
    patch = ov._patch
    region = pics[-1][patch.y0:patch.y0 + glyph.shape[0], patch.x0:patch.x0 + glyph.shape[1]]
    # Lossy, but the white glyphs and their black outline stay far apart in luma.
    assert region[glyph].mean() > 180 and region[ring].mean() < 70
    assert report.chosen == "libx264"
