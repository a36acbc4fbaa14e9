"""Byte-level helpers for the segment files: ISO-BMFF boxes, Annex-B NAL units, the seal box.

A segment is a fragmented MP4 (``ftyp moov (moof mdat)* [mfra] free:seal``). A power cut or
SIGKILL leaves a file whose tail is a partly written fragment; :func:`last_complete_fragment`
finds where the last whole ``moof``+``mdat`` pair ends so the file can be truncated there and
decodes to its end again.

The *seal* is a ``free`` box appended after the muxer closes: players skip ``free`` boxes,
and the seal carries the segment's summary, its SHA-256 and its hash-chain link, so the index
can be rebuilt from the files alone. It is always the last box; :func:`read_seal` reads only
the file's tail (one ``pread``), which is what makes a rebuild of 43,200 segments fast.

Cost: :func:`last_complete_fragment` reads 8-16 bytes per top-level box (one per ~2 s of
video). Thread: any; all functions are pure or touch only the file they are given.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

SEAL_MAGIC = b"CAMNODE-SEAL-1\x00"
#: Seals are small JSON documents; the tail read is this long.
SEAL_MAX = 4096


class BoxError(ValueError):
    """A file does not look like an ISO-BMFF file at all."""


def iter_boxes(fd: int, size: int) -> list[tuple[bytes, int, int]]:
    """Top-level boxes as ``(type, offset, length)``, stopping at the first incomplete box.

    A box whose declared length runs past ``size`` (a write cut short) is not listed.
    """
    out: list[tuple[bytes, int, int]] = []
    off = 0
    while off + 8 <= size:
        head = os.pread(fd, 16, off)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head[:8])
        if length == 1:
            if len(head) < 16:
                break
            length = struct.unpack(">Q", head[8:16])[0]
        elif length == 0:  # "to end of file": only legal for a last box written whole
            length = size - off
        if length < 8 or off + length > size:
            break
        out.append((kind, off, length))
        off += length
    return out


def last_complete_fragment(path: Path) -> tuple[int, int]:
    """``(end_offset, fragments)``: where the last complete ``moof``+``mdat`` ends.

    ``end_offset`` is 0 when the header (``ftyp``+``moov``) is incomplete, and the end of
    ``moov`` when no fragment is complete. Raises :class:`BoxError` for a non-MP4 file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        boxes = iter_boxes(fd, size)
    finally:
        os.close(fd)
    if boxes and boxes[0][0] != b"ftyp":
        raise BoxError(f"{path.name}: not an MP4 file")
    end, frags, have_moov, pending_moof = 0, 0, False, False
    for kind, off, length in boxes:
        if kind == b"moov":
            have_moov = True
            end = off + length
        elif kind == b"moof" and have_moov:
            pending_moof = True
        elif kind == b"mdat" and pending_moof:
            pending_moof = False
            frags += 1
            end = off + length
    return (end if have_moov else 0), frags


# ---------------------------------------------------------------------------- seal


def seal_box(fields: dict[str, Any]) -> bytes:
    """The ``free`` box carrying ``fields`` as compact JSON."""
    body = SEAL_MAGIC + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    if len(body) + 8 > SEAL_MAX:
        raise ValueError("seal too large")
    return struct.pack(">I4s", len(body) + 8, b"free") + body


def read_seal(path: Path) -> tuple[dict[str, Any], int] | None:
    """``(fields, media_bytes)`` of a sealed file, or None when it has no valid seal.

    ``media_bytes`` is the offset where the seal starts: the bytes the SHA-256 covers.
    """
    got = read_seal_sized(path)
    return None if got is None else (got[0], got[1])


def read_seal_sized(path: Path) -> tuple[dict[str, Any], int, int] | None:
    """Like :func:`read_seal`, plus the file's size. Cost: open + fstat + one pread."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        n = min(size, SEAL_MAX)
        tail = os.pread(fd, n, size - n)
    finally:
        os.close(fd)
    got = parse_seal_tail(tail, size)
    return None if got is None else (got[0], got[1], size)


def parse_seal_tail(tail: bytes, size: int) -> tuple[dict[str, Any], int] | None:
    """Find the seal in the last bytes of a file of ``size`` bytes (see :func:`read_seal`)."""
    i = tail.rfind(SEAL_MAGIC)
    if i < 8:
        return None
    length, kind = struct.unpack(">I4s", tail[i - 8 : i])
    if kind != b"free" or length != len(tail) - (i - 8):
        return None
    try:
        fields = json.loads(tail[i + len(SEAL_MAGIC) :])
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    return fields, size - length


# ---------------------------------------------------------------------------- H.264 Annex-B


def split_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B buffer (start codes removed)."""
    out: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = len(data) if j < 0 else j
        nal = data[start:end]
        if j >= 0 and nal.endswith(b"\x00"):  # the leading zero of a 4-byte start code
            nal = nal.rstrip(b"\x00")
        if nal:
            out.append(nal)
        i = j
    return out


def parameter_sets(data: bytes) -> bytes:
    """SPS and PPS of an Annex-B access unit, re-emitted as Annex-B (b"" when absent)."""
    sets = [n for n in split_nals(data) if n[0] & 0x1F in (7, 8)]
    if not any(n[0] & 0x1F == 7 for n in sets) or not any(n[0] & 0x1F == 8 for n in sets):
        return b""
    return b"".join(b"\x00\x00\x00\x01" + n for n in sets)


def is_length_prefixed(data: bytes) -> bool:
    """True when ``data`` parses exactly as 4-byte-length-prefixed NAL units (MP4 framing).

    A 3-byte Annex-B start code looks like a length of 0x000001xx, so the prefix alone cannot
    tell; an exact walk of the lengths can (Annex-B data essentially never tiles that way).
    """
    i, n = 0, len(data)
    while i + 5 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        if length == 0 or data[i + 4] & 0x80:  # forbidden_zero_bit set: not a NAL header
            return False
        i += 4 + length
    return i == n


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """Length-prefixed (MP4) NAL units to Annex-B (used to feed demuxed MP4 H.264 in tests)."""
    out = bytearray()
    i = 0
    while i + length_size <= len(data):
        n = int.from_bytes(data[i : i + length_size], "big")
        i += length_size
        out += b"\x00\x00\x00\x01" + data[i : i + n]
        i += n
    return bytes(out)


def avcc_parameter_sets(extradata: bytes) -> bytes:
    """SPS/PPS of an ``avcC`` record as Annex-B."""
    if not extradata or extradata[0] != 1:
        return extradata  # already Annex-B or empty
    out = bytearray()
    i = 5
    nsps = extradata[i] & 0x1F
    i += 1
    for _ in range(nsps):
        n = int.from_bytes(extradata[i : i + 2], "big")
        out += b"\x00\x00\x00\x01" + extradata[i + 2 : i + 2 + n]
        i += 2 + n
    npps = extradata[i]
    i += 1
    for _ in range(npps):
        n = int.from_bytes(extradata[i : i + 2], "big")
        out += b"\x00\x00\x00\x01" + extradata[i + 2 : i + 2 + n]
        i += 2 + n
    return bytes(out)
