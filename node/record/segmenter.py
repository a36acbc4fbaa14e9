"""Segment files: encoded packets into MPEG-TS files cut at keyframes (first form).

Each segment starts at a keyframe and ends just before the keyframe that follows the target
length, so no frame is lost or duplicated at a boundary. A segment is written under an
in-progress name (``.part``) and renamed to its final name only after the file and its
directory are fsynced. Writes are batched: the muxer flushes every packet into a 1 MiB
user-space buffer that reaches the card at most every ``flush_s`` seconds (SD wear: few, large,
sequential writes; never one write per frame).

Names use UTC (``YYYYMMDD/YYYYMMDDTHHMMSSZ.ts``); a name that already exists (a wall clock
that went backwards) gets a numeric suffix and never overwrites footage.

Thread: ``write`` on the encoder thread; ``health`` from any thread.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from hw.encode.base import TIME_BASE, EncodedPacket, StreamInfo

log = logging.getLogger(__name__)

PART = ".part"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _OpenSegment:
    def __init__(self, path: Path, stream: StreamInfo, first: EncodedPacket) -> None:
        import av

        self.path = path
        self.fh = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self.container = av.open(self.fh, "w", format="mpegts", options={"flush_packets": "1"})
        vs = self.container.add_stream("h264", rate=round(stream.fps))
        vs.width, vs.height = stream.width, stream.height
        vs.time_base = TIME_BASE
        self.stream = vs
        self.start_utc: datetime = first.utc
        self.start_mono = first.mono
        self.pts0 = first.pts
        self.end_utc = first.utc
        self.end_mono = first.mono
        self.packets = 0
        self.keyframes = 0
        self.h264_bytes = 0

    def mux(self, pkt: EncodedPacket) -> None:
        import av

        p = av.Packet(pkt.data)
        p.pts, p.dts = pkt.pts, pkt.dts
        p.time_base = TIME_BASE
        p.stream = self.stream
        p.is_keyframe = pkt.keyframe
        self.container.mux(p)
        self.packets += 1
        self.keyframes += pkt.keyframe
        self.h264_bytes += len(pkt.data)
        self.end_utc, self.end_mono = pkt.utc, pkt.mono

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()


class SegmentWriter:
    """An :class:`~hw.encode.base.Output` that keeps footage as segment files under ``root``."""

    def __init__(self, root: Path, segment_s: float, clock, *, flush_s: float = 2.0) -> None:
        self.root = Path(root)
        self.segment_s = segment_s
        self.flush_s = flush_s
        self._clock = clock
        self._stream: StreamInfo | None = None
        self._seg: _OpenSegment | None = None
        self._last_flush = 0.0
        self._lock = threading.Lock()
        self.closed_segments: list[Path] = []
        self.last_error: str | None = None
        self.bytes_written = 0

    def start(self, stream: StreamInfo) -> None:
        self._stream = stream
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, packet: EncodedPacket) -> None:
        if self._stream is None:
            raise RuntimeError("SegmentWriter.write before start")
        try:
            seg = self._seg
            if seg is not None and packet.keyframe and packet.mono - seg.start_mono >= self.segment_s:
                self._close()
                seg = None
            if seg is None:
                if not packet.keyframe:
                    return  # a segment starts at a keyframe; until then nothing decodable
                seg = self._seg = _OpenSegment(self._new_path(packet.utc), self._stream, packet)
                self._last_flush = packet.mono
            seg.mux(packet)
            if packet.mono - self._last_flush >= self.flush_s:
                seg.fh.flush()
                self._last_flush = packet.mono
            self.last_error = None
        except OSError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("segment write failed: %s", exc)
            self._abandon()

    def _new_path(self, utc: datetime) -> Path:
        day = self.root / utc.strftime("%Y%m%d")
        day.mkdir(exist_ok=True)
        stem = utc.strftime("%Y%m%dT%H%M%SZ")
        n = 0
        while True:
            name = stem if n == 0 else f"{stem}-{n}"
            if not (day / f"{name}.ts").exists() and not (day / f"{name}.ts{PART}").exists():
                return day / f"{name}.ts{PART}"
            n += 1

    def _close(self) -> None:
        seg, self._seg = self._seg, None
        if seg is None:
            return
        seg.close()
        final = seg.path.with_name(seg.path.name[: -len(PART)])
        os.replace(seg.path, final)
        fsync_dir(final.parent)
        self.bytes_written += final.stat().st_size
        with self._lock:
            self.closed_segments.append(final)
        log.info("segment closed %s (%d packets, %d bytes)", final.name, seg.packets, final.stat().st_size)

    def _abandon(self) -> None:
        seg, self._seg = self._seg, None
        if seg is not None:
            try:
                seg.close()
            except Exception:  # the disk is the problem; recovery on restart deals with the file
                log.exception("closing a failed segment")

    def stop(self) -> None:
        self._close()

    def health(self) -> dict[str, Any]:
        seg = self._seg
        return {
            "segments_closed": len(self.closed_segments),
            "current_segment": seg.path.name if seg else None,
            "last_error": self.last_error,
        }
