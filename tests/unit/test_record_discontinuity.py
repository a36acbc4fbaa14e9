"""A segment never spans a hole: where the camera lost packets or its stream restarted, the
recorder cuts (issue 9). The writer is driven with real H.264 and a table of marked packets;
then the whole path — camera flags → encoder thread → recorder — with real threads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from hw.camera.base import SourceError
from hw.encode.base import FanOut
from hw.encode.passthrough import PassthroughEncoder
from hw.media import EncodedPacket, Frame
from node.clock import FakeClock
from node.pipeline import Faults, Pipeline
from node.queues import DropOldestQueue
from node.record.recorder import Recorder
from node.record.segment import parse_name, segment_files
from node.record.writer import SegmentWriter
from tests.record_media import T0, decode_count, encode_packets


def _segments(root: Path) -> list[int]:
    """Frames decoded from each segment file, in recording order (each must decode whole)."""
    files = sorted(segment_files(root), key=lambda p: parse_name(p.name)[1])
    return [decode_count(f) for f in files]


# 6 s at 15 fps, a keyframe every 15 packets (0, 15, 30, 45, 60, 75).
@pytest.mark.parametrize(("marked", "frames", "dropped"), [
    ((), [90], 0),
    ((60,), [60, 30], 0),  # on a keyframe: the next segment starts with it, nothing lost
    ((40,), [40, 45], 5),  # mid-GOP: 41..44 cannot be decoded without what was lost
    ((40, 60), [40, 15, 30], 5),
    ((0,), [90], 0),  # nothing open yet: nothing to cut
])
def test_writer_cuts_at_a_marked_packet(tmp_path: Path, marked, frames, dropped) -> None:
    info, pkts = encode_packets(6, gop_s=1.0)
    assert [i for i, p in enumerate(pkts) if p.keyframe] == [0, 15, 30, 45, 60, 75]
    closed = []
    w = SegmentWriter(tmp_path, 60.0, FakeClock(T0), on_closed=closed.append)
    w.start(info)
    for i, p in enumerate(pkts):
        w.write(dataclasses.replace(p, discontinuity=True) if i in marked else p)
    w.stop()
    assert [c.frames for c in closed] == frames
    assert _segments(tmp_path) == frames
    assert w.dropped == dropped and w.health()["discontinuities"] == len([m for m in marked if m])


def test_queue_marks_the_item_after_a_drop() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(2)
    for i in range(4):  # 0 and 1 are dropped
        q.put(i)
    assert q.get_marked(0) == (2, True)
    assert q.get_marked(0) == (3, False)
    q.put(4)
    assert q.get_marked(0) == (4, False)


class _PacketCamera:
    """An encoded source (as an IP camera or the Pi's hardware encoder) that delivers the given
    packets, with ``meta`` per packet index, then raises ``SourceError`` if ``fail``."""

    encoded = True
    name = "packets"

    def __init__(self, pkts: list[EncodedPacket], meta: dict[int, dict], fail: bool) -> None:
        self._pkts, self._meta, self._fail = pkts, meta, fail
        self.width, self.height, self.fps = 320, 180, 15.0

    def frames(self):
        for p in self._pkts:
            yield Frame(seq=p.seq, mono=p.mono, utc=p.utc, width=320, height=180, main=None,
                        lores=np.zeros((90, 160), np.uint8), packet=p,
                        meta=dict(self._meta.get(p.seq, {})))
        if self._fail:
            raise SourceError("stream dropped")

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"backend": self.name}


def test_camera_gaps_and_a_reopened_stream_cut_the_recording(tmp_path: Path) -> None:
    """Camera 1 delivers packets 0..39, then drops; the node reopens it and gets 45..89 (a
    camera restarts at a keyframe), with packets lost before 60 (``meta["gap"]``)."""
    info, pkts = encode_packets(6, gop_s=1.0)
    cams = [_PacketCamera(pkts[:40], {}, fail=True),
            _PacketCamera(pkts[45:], {60: {"gap": True}}, fail=False)]
    clock = FakeClock(T0)
    rec = Recorder(tmp_path, clock, segment_s=60.0, threaded=False, sweep_s=60)
    fan = FanOut()
    fan.add(rec)
    pipe = Pipeline(clock=clock, fanout=fan, open_source=lambda: cams.pop(0),
                    make_encoder=lambda f, s: (PassthroughEncoder(), info), finite=True,
                    encode_queue=200, faults=Faults())
    pipe.start()
    assert pipe.join(30)
    rec.close()
    assert _segments(tmp_path) == [40, 15, 30]  # no segment spans the reconnect or the gap
    assert rec.writer.discontinuities == 2 and rec.writer.dropped == 0


def test_a_reencoded_stream_restarts_at_a_keyframe_and_loses_nothing(tmp_path: Path) -> None:
    """A camera delivering pixels (decoded RTSP, USB) reconnects mid-GOP: the encoder is asked
    for a keyframe there, so the recording is cut without dropping a frame."""
    from hw.camera.synthetic import SyntheticSource
    from hw.encode.libav import LibavEncoder
    from hw.media import StreamInfo

    clock = FakeClock(T0)
    frames = list(SyntheticSource(320, 240, 10.0, (160, 120), clock, realtime=False,
                                  max_frames=40).frames())
    frames[15].meta["discontinuity"] = True  # mid-GOP (keyframes every 10 frames)

    class Camera(_PacketCamera):
        encoded = False

        def frames(self):
            yield from frames

    rec = Recorder(tmp_path, clock, segment_s=60.0, threaded=False, sweep_s=60)
    fan = FanOut()
    fan.add(rec)

    def make_encoder(frame, stream):
        enc = LibavEncoder(300, 1.0)
        return enc, enc.start(StreamInfo("h264", 320, 240, 10.0))

    pipe = Pipeline(clock=clock, fanout=fan, open_source=lambda: Camera([], {}, fail=False),
                    make_encoder=make_encoder, finite=True, encode_queue=100, faults=Faults())
    pipe.start()
    assert pipe.join(30)
    rec.close()
    assert _segments(tmp_path) == [15, 25]
    assert rec.writer.discontinuities == 1 and rec.writer.dropped == 0
