"""Recorder facade: writer queue overflow, pre-roll ring, untrusted-time retention, build from config."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from node.clock import FakeClock
from node.config import config_from_dict
from node.record.recorder import Recorder, build_recorder
from node.record.retention import Policy, Retention
from node.record.segment import segment_files
from tests.record_media import T0, decode_count, encode_packets, retime


def test_a_stalled_writer_drops_to_the_next_keyframe_and_never_blocks_the_encoder(tmp_path: Path) -> None:
    info, pkts = encode_packets(12, gop_s=1.0)
    rec = Recorder(tmp_path, FakeClock(T0), segment_s=60.0, sweep_s=60,
                   queue_bytes=sum(len(p.data) for p in pkts[:60]))  # ~4 s of video
    gate = threading.Event()
    real_write = rec.writer.write

    def stalled(p):  # the card stops answering for a while
        gate.wait(10)
        real_write(p)

    rec.writer.write = stalled  # type: ignore[method-assign]
    rec.start(info)
    for p in pkts[:120]:
        rec.write(p)  # returns at once although nothing is written
    assert rec.dropped > 0
    gate.set()
    assert rec.drain()
    for p in pkts[120:]:
        rec.write(p)
    rec.stop()
    rows = rec.store.index.rows()
    assert len(rows) == 2, "the gap closed the segment; the next starts at a keyframe"
    assert sum(r["frames"] for r in rows) == len(pkts) - rec.dropped
    for r in rows:
        assert decode_count(rec.store.path_of(r["name"])) == r["frames"]
    assert rec.health()["dropped_packets"] == rec.dropped
    rec.close()


def test_footage_with_untrusted_time_is_not_aged_out_when_the_clock_syncs(tmp_path: Path) -> None:
    info, pkts = encode_packets(6, gop_s=1.0)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)  # booted without RTC or NTP
    clock = FakeClock(epoch, synced=False)
    rec = Recorder(tmp_path, clock, segment_s=3.0, threaded=False,
                   policy=Policy(headroom_s=0, min_free_bytes=0))
    rec.start(info)
    for p in retime(pkts, 0.0, (epoch - T0).total_seconds()):
        rec.write(p)
    rec.stop()
    clock.jump_wall((T0 - epoch).total_seconds() + 60)  # NTP arrives: 2026
    clock.set_synced(True)
    rec.writer.cut()
    for p in retime(pkts, 10.0):
        rec.write(p)
    rec.stop()
    rows = rec.store.index.rows()
    assert [bool(r["synced"]) for r in rows] == [False, False, True, True]
    ret = Retention(rec.store, clock, Policy(max_age_days=30, headroom_s=0, min_free_bytes=0))
    assert ret.sweep().deleted_age == 0  # "56 years old" footage is kept
    clock.set_synced(False)
    clock.advance(31 * 86_400)
    assert ret.sweep().deleted_age == 0  # never by age while the clock is untrusted
    clock.set_synced(True)
    assert ret.sweep().deleted_age == 4  # a month after trusted footage: all of it is old
    assert segment_files(tmp_path) == []
    rec.close()


def test_build_recorder_from_config(tmp_path: Path) -> None:
    from node.record.integrity import generate_key

    key = tmp_path / "node.key"
    pub = generate_key(key)
    cfg = config_from_dict({"storage": {"path": str(tmp_path / "rec"), "segment_s": 30.0},
                            "record": {"max_age_days": 7.0, "headroom_s": 600.0, "signing_key": str(key)}})
    rec = build_recorder(cfg, FakeClock(T0))
    assert rec.writer.segment_s == 30.0 and rec.signer.public_hex == pub
    assert rec.retention.policy.max_age_days == 7.0
    h = rec.health()
    assert h["signed"] is True and h["retention_target_days"] == 7.0
    rec.close()
    missing = config_from_dict({"storage": {"path": str(tmp_path / "rec2")},
                                "record": {"signing_key": str(tmp_path / "not-yet.key")}})
    rec2 = build_recorder(missing, FakeClock(T0))  # not provisioned yet: records, unsigned
    assert rec2.health()["signed"] is False
    rec2.close()


def test_a_new_stream_after_a_reconnect_starts_a_new_segment(tmp_path: Path) -> None:
    info, pkts = encode_packets(4, gop_s=1.0)
    info2, pkts2 = encode_packets(4, size=(640, 360), gop_s=1.0)
    rec = Recorder(tmp_path, FakeClock(T0), segment_s=60.0, sweep_s=60)
    rec.start(info)
    for p in pkts:
        rec.write(p)
    rec.start(info2)  # the camera came back at another size
    for p in retime(pkts2, 10.0):
        rec.write(p)
    rec.stop()
    rows = rec.store.index.rows()
    assert [r["frames"] for r in rows] == [len(pkts), len(pkts2)]
    import av

    sizes = []
    for r in rows:
        with av.open(str(rec.store.path_of(r["name"]))) as c:
            sizes.append((c.streams.video[0].width, c.streams.video[0].height))
        assert decode_count(rec.store.path_of(r["name"])) == r["frames"]
    assert sizes == [(320, 180), (640, 360)]
    rec.close()
