"""Segment writer: keyframe cuts, durability, recovery, clock steps, sync flag (real libx264 + PyAV)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import av
import pytest

from node.clock import FakeClock
from node.record import mp4box
from node.record.integrity import GENESIS, Signer, chain_hash, file_sha256
from node.record.recorder import Recorder
from node.record.segment import PART, parse_name, recover_part, segment_files
from node.record.writer import SegmentWriter
from tests.record_media import T0, decode_count, encode_packets, retime


def _write(root: Path, seconds: float, segment_s: float, clock=None, **kw):
    info, pkts = encode_packets(seconds, **kw)
    closed = []
    w = SegmentWriter(root, segment_s, clock or FakeClock(T0), on_closed=closed.append)
    w.start(info)
    for p in pkts:
        w.write(p)
    return w, closed, pkts


def _frames(path: Path) -> list[tuple[int, bool]]:
    with av.open(str(path)) as c:
        return [(p.pts, bool(p.is_keyframe)) for p in c.demux(video=0) if p.dts is not None]


def test_cuts_at_keyframes_without_losing_or_duplicating_a_frame(tmp_path: Path) -> None:
    w, closed, pkts = _write(tmp_path, 20, 6.0, gop_s=1.0)
    w.stop()
    assert [round((c.end_us - c.start_us) / 1e6, 2) for c in closed] == [6.0, 6.0, 6.0, 2.0]
    assert sum(c.frames for c in closed) == len(pkts)
    for c in closed:
        frames = _frames(c.path)
        assert frames[0][1], "every segment starts at a keyframe"
        assert decode_count(c.path) == c.frames
    # segment i+1 starts exactly one frame after segment i ends: no gap, no overlap
    for a, b in itertools.pairwise(closed):
        assert b.start_us == a.end_us
    assert [c.seq for c in closed] == [1, 2, 3, 4]
    assert all(not p.name.endswith(PART) for p in segment_files(tmp_path))


def test_segment_is_part_until_closed_then_sealed_and_renamed(tmp_path: Path) -> None:
    w, closed, _ = _write(tmp_path, 4, 60.0, gop_s=1.0)
    [part] = segment_files(tmp_path)
    assert part.name.endswith(PART) and not closed
    size_open = part.stat().st_size
    assert size_open > 0, "fragments reach the kernel while the segment is open"
    w.stop()
    [final] = segment_files(tmp_path)
    assert not final.name.endswith(PART) and final.name == closed[0].name
    seal, media = mp4box.read_seal(final)
    assert seal["sha256"] == file_sha256(final, media) == closed[0].sha256
    assert seal["prev"] == GENESIS and seal["chain"] == chain_hash(seal)
    assert parse_name(final.name) == (closed[0].start_us, 1)


def test_fragments_flushed_every_two_seconds_not_per_frame(tmp_path: Path) -> None:
    info, pkts = encode_packets(12, gop_s=4.0)  # a GOP longer than the fragment limit
    w = SegmentWriter(tmp_path, 60.0, FakeClock(T0), frag_s=2.0)
    w.start(info)
    sizes = []
    for p in pkts:
        w.write(p)
        sizes.append(w.bytes_written)
    growths = [i for i in range(1, len(sizes)) if sizes[i] != sizes[i - 1]]
    # 12 s at 15 fps in <= 2 s fragments: ~6 write bursts, not 180
    assert 4 <= len(growths) <= 8
    gaps = [(b - a) / 15 for a, b in itertools.pairwise(growths)]
    assert max(gaps) <= 2.0 + 1 / 15


def test_cut_file_is_recovered_to_its_last_fragment(tmp_path: Path) -> None:
    w, _closed, pkts = _write(tmp_path, 9, 60.0, gop_s=1.0)
    seg = w._seg
    assert seg is not None
    os.close(seg.sink.fd)  # the process dies here: no trailer, no seal
    part = seg.path
    os.truncate(part, part.stat().st_size - 700)  # and the last write was torn
    info = recover_part(part, Signer.none(), GENESIS)
    assert info is not None and info.recovered
    assert decode_count(info.path) == info.frames
    written_s = (pkts[-1].pts - pkts[0].pts) / 90_000
    assert written_s - (info.end_us - info.start_us) / 1e6 <= 2.0 + 1 / 15
    assert mp4box.read_seal(info.path)[0]["recovered"] is True


def test_part_without_a_complete_fragment_is_removed(tmp_path: Path) -> None:
    w, _, _ = _write(tmp_path, 0.5, 60.0, gop_s=1.0)  # only the header reached the file
    seg = w._seg
    os.close(seg.sink.fd)
    assert recover_part(seg.path, Signer.none(), GENESIS) is None
    assert not seg.path.exists()


def test_clock_jumping_back_an_hour_never_overwrites_and_keeps_order(tmp_path: Path) -> None:
    info, pkts = encode_packets(30, gop_s=1.0)
    # the wall clock steps back 3600 s at 12 s (mono keeps going)
    jumped = pkts[:180] + retime(pkts[180:], 0.0, -3600.0)
    rec = Recorder(tmp_path, FakeClock(T0), segment_s=5.0, threaded=False)
    rec.start(info)
    for p in jumped:
        rec.write(p)
    rec.stop()
    rows = rec.store.index.rows()
    files = sorted(segment_files(tmp_path), key=lambda p: parse_name(p.name)[1])
    assert [r["name"] for r in rows] == [p.name for p in files]  # every file kept, none replaced
    assert sum(r["frames"] for r in rows) == len(pkts)
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    steps = [r for r in rows if r["clock_step_s"]]
    assert len(steps) == 1 and round(steps[0]["clock_step_s"]) == -3600
    # the segment after the step starts an hour "earlier" yet sorts after in the index
    i = rows.index(steps[0])
    assert rows[i]["start_us"] < rows[i - 1]["start_us"]
    for r in rows:
        assert r["end_us"] > r["start_us"]
        assert decode_count(tmp_path / r["name"][:8] / r["name"]) == r["frames"]
    rec.close()


@pytest.mark.parametrize(("synced_at", "expected"), [
    ([True, True, True], True),
    ([False, False, False], False),
    ([True, False, True], False),  # lost sync mid-segment: the whole segment is flagged
])
def test_segment_records_whether_the_clock_was_synced(tmp_path: Path, synced_at, expected) -> None:
    info, pkts = encode_packets(3, gop_s=1.0)
    clock = FakeClock(T0)
    closed = []
    w = SegmentWriter(tmp_path, 60.0, clock, on_closed=closed.append)
    w.start(info)
    for p in pkts:
        if p.keyframe:
            clock.set_synced(synced_at[p.pts // 90_000])
        w.write(p)
    w.stop()
    assert closed[0].synced is expected
    assert mp4box.read_seal(closed[0].path)[0]["synced"] is expected


def test_packets_before_the_first_keyframe_are_not_written(tmp_path: Path) -> None:
    info, pkts = encode_packets(3, gop_s=1.0)
    closed = []
    w = SegmentWriter(tmp_path, 60.0, FakeClock(T0), on_closed=closed.append)
    w.start(info)
    for p in pkts[5:]:  # join mid-GOP, as after a camera reconnect
        w.write(p)
    w.stop()
    assert w.dropped == 10 and closed[0].frames == len(pkts) - 15
    assert decode_count(closed[0].path) == closed[0].frames


def test_bytes_written_per_byte_of_h264_at_low_bitrate(tmp_path: Path) -> None:
    w, _, _ = _write(tmp_path, 20, 10.0, gop_s=2.0, kbps=300)
    w.stop()
    assert w.bytes_written / w.h264_bytes <= 1.05


def test_real_camera_h264_is_written_unchanged(tmp_path: Path, shared_dir: Path) -> None:
    """A real clip's H.264 (as an IP camera delivers it) is remuxed, never re-encoded."""
    from tests.record_media import clip_packets

    info, pkts = clip_packets(shared_dir / "media" / "videos" / "car-detection.mp4")
    closed = []
    w = SegmentWriter(tmp_path, 10.0, FakeClock(T0), on_closed=closed.append)
    w.start(info)
    for p in pkts:
        w.write(p)
    w.stop()
    assert sum(c.frames for c in closed) == len(pkts)
    # the slices in the files are the camera's, byte for byte (only the framing differs)
    src = [mp4box.split_nals(p.data) for p in pkts]
    out = []
    for c in closed:
        with av.open(str(c.path)) as cont:
            out += [mp4box.split_nals(mp4box.avcc_to_annexb(bytes(p)))
                    for p in cont.demux(video=0) if p.dts is not None]
    vcl = [[n for n in nals if n[0] & 0x1F in (1, 5)] for nals in src]
    assert [[n for n in nals if n[0] & 0x1F in (1, 5)] for nals in out] == vcl


def test_length_prefixed_packets_are_converted_not_corrupted(tmp_path: Path) -> None:
    import dataclasses

    info, pkts = encode_packets(3, gop_s=1.0)
    avcc = []
    for p in pkts:
        body = b"".join(len(n).to_bytes(4, "big") + n for n in mp4box.split_nals(p.data))
        avcc.append(dataclasses.replace(p, data=body))
    closed = []
    w = SegmentWriter(tmp_path, 60.0, FakeClock(T0), on_closed=closed.append)
    w.start(info)
    for p in avcc:
        w.write(p)
    w.stop()
    assert decode_count(closed[0].path) == len(pkts)
