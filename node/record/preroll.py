"""Pre-roll: a RAM ring of the last N seconds of encoded packets, always starting at a keyframe.

An :class:`~hw.encode.base.Output` like the segment writer. It keeps whole GOPs: the oldest
GOP is dropped only while the GOPs after it still cover ``seconds``, so :meth:`snapshot`
always starts at a keyframe and covers at least ``seconds`` once that much has been seen
(up to ``seconds`` + one GOP). A byte cap protects RAM when the bitrate spikes.

Used to start an event clip before its trigger without reading the card (the clip to send
to the station at once), and by :func:`write_clip` to turn a snapshot into an MP4.

Cost: one deque append per packet; RAM ≈ (seconds + GOP) x bitrate (1.2 Mbit/s, 10 s: ~2 MB).
Thread: ``write`` on the encoder thread; ``snapshot`` from any thread (a lock, O(packets)).
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from fractions import Fraction
from pathlib import Path

from hw.media import TIME_BASE, EncodedPacket, StreamInfo
from node.record import mp4box


class PreRoll:
    """Ring of complete GOPs covering the last ``seconds`` of video."""

    def __init__(self, seconds: float, max_bytes: int = 32 << 20) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._gops: deque[list[EncodedPacket]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self.stream: StreamInfo | None = None

    def start(self, stream: StreamInfo) -> None:
        self.stream = stream

    def write(self, packet: EncodedPacket) -> None:
        with self._lock:
            if packet.keyframe:
                self._gops.append([])
            elif not self._gops:
                return  # nothing before the first keyframe is decodable
            self._gops[-1].append(packet)
            self._bytes += len(packet.data)
            self._trim()

    def _trim(self) -> None:
        while len(self._gops) > 1:
            second = self._gops[1][0]
            newest = self._gops[-1][-1]
            span_without_first = newest.mono - second.mono
            if span_without_first >= self.seconds or self._bytes > self.max_bytes:
                dropped = self._gops.popleft()
                self._bytes -= sum(len(p.data) for p in dropped)
            else:
                break

    def stop(self) -> None:
        with self._lock:
            self._gops.clear()
            self._bytes = 0

    def snapshot(self, since: datetime | None = None) -> list[EncodedPacket]:
        """Packets from the last keyframe at or before ``since`` (all kept ones when None)."""
        with self._lock:
            gops = list(self._gops)
        if since is not None:
            start = 0
            for i, g in enumerate(gops):
                if g[0].utc <= since:
                    start = i
            gops = gops[start:]
        return [p for g in gops for p in g]

    def health(self) -> dict[str, float]:
        with self._lock:
            if not self._gops:
                return {"preroll_s": 0.0, "preroll_bytes": 0}
            span = self._gops[-1][-1].mono - self._gops[0][0].mono
            return {"preroll_s": round(span, 2), "preroll_bytes": self._bytes}


def write_clip(packets: list[EncodedPacket], stream: StreamInfo, out: Path) -> int:
    """Mux packets (starting at a keyframe) into a standard MP4, timestamps rebased to 0.

    Two steps, no re-encode: Annex-B packets → fragmented MP4 in memory (the segment writer's
    proven path), then a remux through ``add_stream_from_template`` into a plain MP4 with
    ``faststart`` (PyAV's bare ``add_stream`` drops packets in a plain MP4). Returns the number
    of packets written. Cost: ~2x the clip size in RAM for a moment.
    """
    import io

    import av

    if not packets or not packets[0].keyframe:
        raise ValueError("a clip must start at a keyframe")
    params = mp4box.avcc_parameter_sets(stream.extradata) or mp4box.parameter_sets(packets[0].data)
    base = packets[0].dts
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4",
                 options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as oc:
        vs = oc.add_stream("h264", rate=Fraction(stream.fps).limit_denominator(1001))
        vs.width, vs.height = stream.width, stream.height
        vs.time_base = TIME_BASE
        vs.codec_context.extradata = params
        for pkt in packets:
            p = av.Packet(pkt.data)
            p.pts, p.dts = pkt.pts - base, pkt.dts - base
            p.time_base = TIME_BASE
            p.stream = vs
            p.is_keyframe = pkt.keyframe
            oc.mux(p)
    buf.seek(0)
    n = 0
    with av.open(buf, "r", format="mp4") as src, \
            av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as oc:
        ins = src.streams.video[0]
        vs = oc.add_stream_from_template(ins)
        for p in src.demux(ins):
            if p.dts is None:
                continue
            p.stream = vs
            oc.mux(p)
            n += 1
    return n
