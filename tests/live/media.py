"""H.264 helpers for the live tests: NAL units of Annex-B (RTSP) and AVCC (MP4) packets."""

from __future__ import annotations

from pathlib import Path

import av

VCL = (1, 5)  # coded slices: the picture itself


def nal_units(data: bytes, avcc: bool = False) -> list[bytes]:
    """NAL units of one access unit: Annex-B (start codes; what RTSP clients get) or, with
    ``avcc``, 4-byte lengths (what MP4 holds; a length like 0x165 looks like a start code, so
    the form is given, not guessed)."""
    if not avcc:
        out, parts = [], data.split(b"\x00\x00\x01")
        for part in parts[1:]:
            out.append(part.rstrip(b"\x00") if part.endswith(b"\x00") else part)
        return [n for n in out if n]
    out, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def slices(data: bytes, avcc: bool = False) -> bytes:
    """The coded slices of an access unit, concatenated: what byte-identical means for a stream
    whose parameter sets a relay may repeat."""
    return b"".join(n for n in nal_units(data, avcc) if n and n[0] & 0x1F in VCL)


def recorded_slices(root: Path) -> list[bytes]:
    """Every recorded access unit's slices, in recording order (segment names sort by time)."""
    out: list[bytes] = []
    for seg in sorted(p for p in root.rglob("*.mp4")):
        with av.open(str(seg)) as c:
            for pkt in c.demux(video=0):
                if pkt.size:
                    out.append(slices(bytes(pkt), avcc=True))
    return out
