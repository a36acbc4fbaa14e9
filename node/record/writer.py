"""Segment files: H.264 packets into fragmented-MP4 segments cut at keyframes, no re-encode.

Why fragmented MP4 and not MPEG-TS (the first form of this module): both survive a cut
(TS decodes to its last packet; a cut fMP4 decodes to its last complete fragment and is made
whole by truncating there, see :func:`recover_part`), but TS costs 188-byte packets with 4-byte
headers, PES headers, PAT/PMT and a padded last packet per frame: ~7-9 % at 300 kbit/s (measured
by ``bench/bench_record.py``), over the 5 % budget. fMP4 costs one ``moof`` per 2 s: < 1 %.

Layout: ``<root>/YYYYMMDD/YYYYMMDDTHHMMSS.mmmZ-<seq>.mp4`` (UTC of the first frame, then a
sequence number that only grows). The sequence number, not the wall clock, orders footage: a
clock that jumps back an hour gives names that sort "earlier" but can never collide, and the
index orders by ``seq``. A wall-clock step (|utc - mono| moving by more than 1 s) cuts the
segment at the next keyframe and the new one records the step (``clock_step_s``); inside a
segment times are derived from the monotonic timeline, so one segment is never self-
contradictory. ``synced`` is False when the clock was unsynchronised at any keyframe.
A packet marked ``discontinuity`` (the camera lost packets before it, or its stream restarted)
closes the open segment there: a segment never spans a hole.

Durability: fragments of at most ``frag_s`` (2 s) are handed to the kernel as soon as the
muxer emits them (one sequential ``write`` burst per fragment, nothing per frame);
``sync_fragments`` adds an ``fdatasync`` per fragment (the node's default: without it a power
cut lost 4-8 s, the ext4 journal's commit holding back the file's size; the cost is one journal
commit per fragment, ``docs/recording.md``). On close: mux trailer, append the seal (see :mod:`mp4box`),
``fsync`` the file, rename ``.part`` → final, ``fsync`` the directory, then ``on_closed``.

A full disk never raises out of :meth:`SegmentWriter.write`: bytes the kernel refuses are held
in RAM (up to ``max_pending_bytes``) and retried on every packet while retention frees space;
past the limit the segment is closed at its last fragment on disk and recording restarts at
the next keyframe.

Cost: ~20-60 µs per packet (PyAV mux into memory), a 32 KiB ``write`` per burst.
Thread: every method on ONE thread (the recorder's writer thread, or the encoder thread when
used bare as an ``Output``); ``health`` from any thread.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from hw.media import TIME_BASE, EncodedPacket, StreamInfo
from node.record import mp4box
from node.record.integrity import Signer
from node.record.segment import (
    PART,
    SegmentInfo,
    finalise,
    recover_part,
    scan_head,
    segment_name,
    to_us,
    write_all,
)

log = logging.getLogger(__name__)

STEP_LIMIT_S = 1.0


class _SinkFile(io.RawIOBase):
    """What the muxer writes into: hashes, counts, writes through, holds bytes on ENOSPC."""

    def __init__(self, path: Path, max_pending: int) -> None:
        super().__init__()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.sha = hashlib.sha256()
        self.offered = 0  # bytes the muxer produced
        self.on_disk = 0  # bytes the kernel accepted
        self.pending = bytearray()
        self.max_pending = max_pending
        self.error: OSError | None = None
        self.discard = False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.offered

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.offered += len(data)
        if self.discard:
            return len(data)
        self.sha.update(data)
        self.pending += data
        self.drain()
        return len(data)

    def drain(self) -> bool:
        """Push held bytes to the kernel; True when nothing is left held."""
        while self.pending and not self.discard:
            try:
                n = os.write(self.fd, self.pending)
            except OSError as exc:
                self.error = exc
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO) or \
                        len(self.pending) > self.max_pending:
                    self.discard = True  # give up on this segment; keep what is on disk
                return False
            del self.pending[:n]
            self.on_disk += n
        if not self.pending:
            self.error = None
        return not self.pending


class _Open:
    """The segment being written."""

    def __init__(self, root: Path, seq: int, stream: StreamInfo, first: EncodedPacket,
                 params: bytes, synced: bool, step: float, frag_s: float, max_pending: int) -> None:
        import av

        self.seq = seq
        self.start_us = to_us(first.utc)
        self.offset0 = first.utc.timestamp() - first.mono
        self.name = segment_name(self.start_us, seq)
        day = root / self.name[:8]
        day.mkdir(parents=True, exist_ok=True)
        self.path = day / (self.name + PART)
        self.sink = _SinkFile(self.path, max_pending)
        self.fps = stream.fps
        self.dts0 = first.dts
        self.last_pts = first.pts
        self.max_pts = first.pts
        self.frames = self.keyframes = self.h264_bytes = 0
        self.synced = synced
        self.step = step
        self.step_seen = 0.0
        self.mono0 = first.mono
        try:
            self.container = av.open(self.sink, "w", format="mp4", options={
                "movflags": "frag_keyframe+empty_moov+default_base_moof",
                "frag_duration": str(int(frag_s * 1_000_000)), "flush_packets": "1"})
            self.container.metadata["comment"] = json.dumps(
                {"camnode": 1, "seq": seq, "start_us": self.start_us, "synced": synced,
                 "clock_step_s": step})
            vs = self.container.add_stream("h264", rate=Fraction(stream.fps).limit_denominator(1001))
            vs.width, vs.height = stream.width, stream.height
            vs.time_base = TIME_BASE
            vs.codec_context.extradata = params
            self.stream = vs
        except Exception:
            os.close(self.sink.fd)
            raise

    def mux(self, pkt: EncodedPacket) -> None:
        import av

        p = av.Packet(pkt.data)
        p.pts, p.dts = pkt.pts - self.dts0, pkt.dts - self.dts0
        p.time_base = TIME_BASE
        p.stream = self.stream
        p.is_keyframe = pkt.keyframe
        self.container.mux(p)
        self.frames += 1
        self.keyframes += pkt.keyframe
        self.h264_bytes += len(pkt.data)
        self.last_pts = pkt.pts
        self.max_pts = max(self.max_pts, pkt.pts)

    @property
    def end_us(self) -> int:
        dur = (self.max_pts - (self.dts0 if self.frames else self.max_pts)) / 90_000 + 1.0 / self.fps
        return self.start_us + round(dur * 1_000_000)


class SegmentWriter:
    """An :class:`~hw.encode.base.Output` keeping footage as sealed fMP4 segments under ``root``.

    ``on_closed(info)`` is called (on the writer's thread) after each segment is final and
    fsynced; the recorder indexes it there. ``on_full()`` is called when the card refuses
    bytes; it returns once retention has had a chance to free space (the bytes wait in RAM).
    ``next_seq``/``chain_head`` continue the store's sequence and hash chain; when None they
    are read from the files under ``root``.
    """

    def __init__(self, root: Path, segment_s: float, clock: Any, *, frag_s: float = 2.0,
                 signer: Signer | None = None, next_seq: int | None = None,
                 chain_head: str | None = None,
                 on_closed: Callable[[SegmentInfo], None] | None = None,
                 sync_fragments: bool = False, max_pending_bytes: int = 16 << 20,
                 on_full: Callable[[], None] | None = None) -> None:
        self.root = Path(root)
        self.segment_s = segment_s
        self.frag_s = frag_s
        self._clock = clock
        self.signer = signer or Signer.none()
        self.on_closed = on_closed
        self.on_full = on_full
        self.sync_fragments = sync_fragments
        self.max_pending = max_pending_bytes
        if next_seq is None or chain_head is None:
            seq, head = scan_head(self.root)
            next_seq = seq + 1 if next_seq is None else next_seq
            chain_head = head if chain_head is None else chain_head
        self.next_seq = next_seq
        self.chain_head = chain_head
        self._stream: StreamInfo | None = None
        self._params = b""
        self._seg: _Open | None = None
        self._cut_requested = False
        self._pending_step = 0.0
        self._unfinished: list[Path] = []
        self.segments_closed = 0
        self.last_error: str | None = None
        self.dropped = 0
        self.discontinuities = 0  # cuts at packets marked discontinuity
        self._bytes_closed = 0
        self.h264_bytes = 0

    # ------------------------------------------------------------------ Output

    def start(self, stream: StreamInfo) -> None:
        """Set the stream; a different stream (size, rate, parameter sets) closes the open
        segment first, so one file never mixes two streams."""
        if self._seg is not None and stream != self._stream:
            self._close()
        self._stream = stream
        self._params = mp4box.avcc_parameter_sets(stream.extradata)
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, packet: EncodedPacket) -> None:
        """Mux one packet; cut before a keyframe when the segment is long enough."""
        if self._stream is None:
            raise RuntimeError("SegmentWriter.write before start")
        try:
            self._write(packet)
        except Exception as exc:  # never let the encoder thread die for the recorder
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("segment write failed")
            self._abandon()

    def _write(self, packet: EncodedPacket) -> None:
        if not packet.data.startswith(b"\x00\x00\x00\x01") and mp4box.is_length_prefixed(packet.data):
            # length-prefixed (MP4-style) H.264 from a source that did not convert: the muxer
            # is told the stream is Annex-B, so convert rather than write garbage
            packet = dataclasses.replace(packet, data=mp4box.avcc_to_annexb(packet.data))
        seg = self._seg
        if packet.discontinuity and seg is not None:
            # Packets were lost before this one, or the stream restarted: a segment never spans
            # that. A keyframe opens the next segment at once; after anything else the packets
            # up to the next keyframe cannot be decoded and are dropped (counted).
            self.discontinuities += 1
            self._close()
            seg = None
        if packet.keyframe:
            params = mp4box.parameter_sets(packet.data)
            if params:
                self._params = params
        if seg is not None:
            step = (packet.utc.timestamp() - packet.mono) - seg.offset0
            if abs(step) > STEP_LIMIT_S and abs(step - seg.step_seen) > STEP_LIMIT_S:
                seg.step_seen = step
                self._pending_step = step
                self._cut_requested = True
                log.warning("wall clock stepped by %+.1f s; cutting at the next keyframe", step)
            if seg.sink.discard:
                self._close(seg_failed=True)
                seg = None
            elif packet.keyframe and (self._cut_requested or
                                      packet.mono - seg.mono0 >= self.segment_s - 0.5 / seg.fps):
                self._close()
                seg = None
        if seg is None:
            if not packet.keyframe or not self._params:
                self.dropped += 1
                return
            if self._unfinished:
                self._retry_unfinished()
            self._seg = seg = _Open(self.root, self.next_seq, self._stream, packet, self._params,
                                    self._clock.synced(), self._pending_step, self.frag_s,
                                    self.max_pending)
            self.next_seq += 1
            self._cut_requested = False
            self._pending_step = 0.0
        elif packet.keyframe and seg.synced and not self._clock.synced():
            seg.synced = False
        before = seg.sink.on_disk
        if seg.sink.pending:
            seg.sink.drain()
        seg.mux(packet)
        self.h264_bytes += len(packet.data)
        grew = seg.sink.on_disk - before
        if seg.sink.error is not None:
            self.last_error = f"{type(seg.sink.error).__name__}: {seg.sink.error}"
        if seg.sink.pending and self.on_full is not None:
            self.on_full()
            seg.sink.drain()
        if grew and self.sync_fragments:
            os.fdatasync(seg.sink.fd)

    @property
    def bytes_written(self) -> int:
        """Bytes of segment files written so far (closed files + the open one's bytes)."""
        seg = self._seg
        return self._bytes_closed + (seg.sink.on_disk if seg else 0)

    def cut(self) -> None:
        """Start a new segment at the next keyframe (e.g. after dropped packets)."""
        self._cut_requested = True

    def gap(self) -> None:
        """Packets were lost upstream: close the current segment now."""
        if self._seg is not None:
            self._close()

    def stop(self) -> None:
        if self._seg is not None:
            self._close()
        if self._unfinished:
            self._retry_unfinished()

    def health(self) -> dict[str, Any]:
        seg = self._seg
        return {
            "current_segment": seg.name if seg else None,
            "current_pending_bytes": len(seg.sink.pending) if seg else 0,
            "segments_closed": self.segments_closed,
            "last_error": self.last_error,
            "dropped_packets": self.dropped,
            "discontinuities": self.discontinuities,
        }

    # ------------------------------------------------------------------ closing

    def _close(self, seg_failed: bool = False) -> None:
        seg, self._seg = self._seg, None
        if seg is None:
            return
        try:
            seg.container.close()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            seg_failed = True
        sink = seg.sink
        if not seg_failed:
            for _ in range(3):  # a full card: let retention free space, then try again
                if sink.drain() or sink.discard or self.on_full is None:
                    break
                self.on_full()
        if seg_failed or sink.discard or sink.pending:
            os.close(sink.fd)
            log.error("segment %s could not be written whole; keeping its last fragment", seg.name)
            info = self._recover(seg.path)
        else:
            info = SegmentInfo(seg.seq, seg.name, seg.start_us, seg.end_us, seg.frames,
                               seg.keyframes, seg.synced, seg.step, False, sink.on_disk,
                               sink.sha.hexdigest(), self.chain_head).sealed(self.signer)
            try:
                self._write_seal(sink.fd, mp4box.seal_box(info.seal_fields()), sink.on_disk)
            except OSError as exc:
                os.close(sink.fd)
                self.last_error = f"{type(exc).__name__}: {exc}"
                info = self._recover(seg.path)
            else:
                os.close(sink.fd)
                info = finalise(seg.path, info)
        if info is not None:
            self._done(info)

    def _write_seal(self, fd: int, seal: bytes, at: int) -> None:
        """Append the seal and fsync; on ENOSPC ask for space (``on_full``) and retry."""
        for attempt in range(3):
            try:
                os.ftruncate(fd, at)  # a seal torn by an earlier attempt
                write_all(fd, seal)
                os.fsync(fd)
                return
            except OSError as exc:
                if exc.errno != errno.ENOSPC or self.on_full is None or attempt == 2:
                    raise
                self.on_full()

    def _recover(self, path: Path) -> SegmentInfo | None:
        """Close a segment at its last fragment; on a full disk retry later (``_unfinished``)."""
        try:
            return recover_part(path, self.signer, self.chain_head)
        except OSError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("cannot close %s yet (%s); retrying once space is freed", path.name, exc)
            self._unfinished.append(path)
            return None

    def _retry_unfinished(self) -> None:
        while self._unfinished:
            path = self._unfinished[0]
            try:
                info = recover_part(path, self.signer, self.chain_head)
            except OSError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                return
            self._unfinished.pop(0)
            if info is not None:
                self._done(info)

    def _done(self, info: SegmentInfo) -> None:
        self.chain_head = info.chain
        if info.path is not None:
            self._bytes_closed += info.path.stat().st_size
        self.segments_closed += 1
        log.info("segment %s closed: %d frames, %.1f s, %d bytes", info.name, info.frames,
                 (info.end_us - info.start_us) / 1e6, info.media_bytes)
        if self.on_closed is not None:
            self.on_closed(info)

    def _abandon(self) -> None:
        if self._seg is not None:
            try:
                self._close(seg_failed=True)
            except Exception:
                log.exception("closing a failed segment")
                self._seg = None
