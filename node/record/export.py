"""Clip export: the segments covering a UTC range remuxed (no re-encode) into one standard MP4.

The clip starts at the keyframe at or before the requested start (so it starts within one GOP
of it and decodes from its first frame) and ends with the last frame before the requested
end. Timestamps are rebased to 0 and made continuous across segment boundaries (each
segment continues where the previous one's last frame ends), so a player sees one stream even
when the segments came from a recorder restart or a wall-clock step.

Beside ``clip.mp4`` goes ``clip.mp4.json``, the manifest: the requested and actual range,
the clip's SHA-256, and for every source segment its chain entry (name, times, SHA-256,
``prev``, ``chain``, signature) so ``camnode verify clip.mp4 --manifest`` can check the clip
and the chain links without the node. The manifest itself is signed when the node has a key.

Cost: a demux of the covering segments (no decode) and one write of the clip.
Thread: any (CLI or a worker); reads the index through its own connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from node.record.index import Index
from node.record.integrity import CHAIN_FIELDS, Signer, file_sha256
from node.record.segment import from_us, to_us
from node.record.store import INDEX_NAME

TB = Fraction(1, 90_000)


class ExportError(RuntimeError):
    """No footage covers the range, or a source segment cannot be read."""


class ExportRefused(ExportError):
    """The request itself cannot be met (no footage in the range, end before start): an answer
    to the asker, not a fault of the node."""


def iso(us: int) -> str:
    return from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def manifest_path(clip: Path) -> Path:
    """The one naming rule for a clip's manifest, wherever the clip was made (node, station):
    ``<clip file name>.json`` beside it, e.g. ``clip.mp4`` → ``clip.mp4.json``."""
    return clip.with_name(clip.name + ".json")


def manifest_digest(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


def _open_segment(root: Path, row: dict[str, Any]) -> Any:
    import av

    path = Path(root) / row["name"][:8] / row["name"]
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ExportError(f"cannot read {row['name']}: {exc}") from exc


def _timed_packets(c: Any, vs: Any) -> Any:
    """``(pts, dts, packet)`` in 1/90000 for every packet that has both (demux only)."""
    import av

    try:
        for p in c.demux(vs):
            if p.dts is None or p.pts is None:
                continue
            yield round(p.pts * p.time_base / TB), round(p.dts * p.time_base / TB), p
    except av.error.FFmpegError as exc:  # a recovered segment's torn tail ends the stream
        if not isinstance(exc, av.error.InvalidDataError):
            raise ExportError(f"cannot read a segment: {exc}") from exc


def export_clip(root: Path, start: datetime, end: datetime, out: Path, *,
                signer: Signer | None = None, node_id: str = "") -> dict[str, Any]:
    """Write ``out`` and ``out.json``; returns the manifest."""
    import av

    if end <= start:
        raise ExportRefused("the end must be after the start")
    start_us, end_us = to_us(start), to_us(end)
    if not (Path(root) / INDEX_NAME).is_file():  # never create (or call corrupt) a store that is not there
        raise ExportError(f"no footage store at {root} (no {INDEX_NAME}): is this the node's config?")
    idx = Index(Path(root) / INDEX_NAME)
    try:
        rows = idx.range(start_us, end_us)
    finally:
        idx.close()
    if not rows:
        raise ExportRefused(f"no footage between {iso(start_us)} and {iso(end_us)}")

    # Pass 1: demux (no decode) every covering packet's timing — not its bytes: memory stays
    # a few tuples per frame whatever the clip's length.
    items: list[tuple[int, int, int, int, int, bool]] = []  # (t_us, seg, k-th packet, pts, dts, key)
    template = None
    first_container = None
    for si, row in enumerate(rows):
        c = _open_segment(root, row)
        if first_container is None:
            first_container = c  # its stream is the output's template (kept open until pass 2)
        with contextlib.ExitStack() as stack:
            if c is not first_container:
                stack.enter_context(c)
            vs = c.streams.video[0]
            if template is None:
                template = (vs, vs.average_rate or vs.guessed_rate or 15)
            first_pts = None
            for k, (pts, dts, p) in enumerate(_timed_packets(c, vs)):
                if first_pts is None:
                    first_pts = pts
                t_us = row["start_us"] + (pts - first_pts) * 1_000_000 // 90_000
                items.append((t_us, si, k, pts, dts, bool(p.is_keyframe)))
    first = 0
    for i, it in enumerate(items):
        if it[5] and it[0] <= start_us:
            first = i
        if it[0] > start_us:
            break
    while first < len(items) and not items[first][5]:
        first += 1
    chosen = [it for it in items[first:] if it[0] < end_us]
    if not chosen:
        raise ExportError("no decodable frame in the range")

    # Pass 2: read the chosen packets again, segment by segment, and mux them with continuous
    # timestamps.
    assert template is not None and first_container is not None
    in_stream, rate = template
    frame = round(90_000 / float(rate))
    used = sorted({it[1] for it in chosen})
    wanted: dict[int, set[int]] = {}
    for it in chosen:
        wanted.setdefault(it[1], set()).add(it[2])
    # A stream made from the recorded one (add_stream_from_template): PyAV's plain
    # add_stream("h264") loses packets when muxing a non-fragmented MP4 (measured, av 18).
    with first_container, av.open(str(out), "w", format="mp4",
                                  options={"movflags": "+faststart"}) as oc:
        vs_out = oc.add_stream_from_template(in_stream)
        last_out = -frame
        for si in used:
            with _open_segment(root, rows[si]) as c:
                offset = None
                for k, (pts, dts, p) in enumerate(_timed_packets(c, c.streams.video[0])):
                    if k not in wanted[si]:
                        continue
                    if offset is None:  # continue one frame after the previous segment's last
                        offset = last_out + frame - dts
                    key = bool(p.is_keyframe)
                    q = av.Packet(bytes(p))
                    q.dts, q.pts = dts + offset, pts + offset
                    q.time_base = TB
                    q.stream = vs_out
                    q.is_keyframe = key
                    oc.mux(q)
                    last_out = q.dts
    segs = []
    for si in used:
        row = rows[si]
        entry = {k: row[k] for k in CHAIN_FIELDS if k in row}
        entry.update(synced=bool(row["synced"]), recovered=bool(row["recovered"]),
                     chain=row["chain"], sig=row["sig"], start_utc=iso(row["start_us"]),
                     end_utc=iso(row["end_us"]))
        segs.append(entry)
    manifest: dict[str, Any] = {
        "format": "camnode-clip-1",
        "node_id": node_id,
        "clip": out.name,
        "sha256": file_sha256(out),
        "bytes": out.stat().st_size,
        "requested": {"start": iso(start_us), "end": iso(end_us)},
        "actual": {"start": iso(chosen[0][0]), "end": iso(chosen[-1][0] + frame * 1_000_000 // 90_000)},
        "frames": len(chosen),
        "time_trusted": all(s["synced"] for s in segs),
        "clock_steps": [s["name"] for s in segs if s["clock_step_s"]],
        "segments": segs,
        "public_key": signer.public_hex if signer and signer.enabled else None,
    }
    if signer is not None and signer.enabled:
        manifest["signature"] = signer.sign(manifest_digest(manifest).hex())
    manifest_path(out).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest
