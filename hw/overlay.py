"""On-screen text burned into the main stream: node name, local date/time with UTC offset.

Every CCTV recorder stamps its pictures; footage used as evidence needs the place and time in
the picture itself, not only in file names. The text is drawn into the Y plane (white glyphs
with a black outline, readable on sky and on asphalt) and the chroma under it is set neutral,
so no colour fringes appear.

Cheap enough for a Pi: the text is rasterised with a built-in 5x7 pixel font only when it
changes (once a second), into a small patch; each frame then costs one masked copy of that
patch into the frame — the text region only, never the whole frame (≈20-40 µs at 1080p here,
see ``bench/bench_hw.py``). No font files, no PIL, no OpenCV at run time.

Assumptions: frames are planar yuv420p arrays of shape ``(height * 3 // 2, width)`` laid out as
PyAV does (the same as picamera2's ``YUV420`` main stream at a width that is a multiple of 64,
where there is no row padding). Thread: ``apply`` on one thread at a time (the encoder thread,
or picamera2's callback thread); the time zone is read once at construction.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import numpy as np

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")

# A 5x7 pixel font drawn for this project: each glyph is 7 rows of 5 bits, top row first.
_FONT_ROWS = {
    " ": "00000 00000 00000 00000 00000 00000 00000",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "/": "00001 00010 00010 00100 01000 01000 10000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "#": "01010 01010 11111 01010 11111 01010 01010",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "'": "00100 00100 01000 00000 00000 00000 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
    "!": "00100 00100 00100 00100 00100 00000 00100",
    "&": "01100 10010 10100 01000 10101 10010 01101",
    "*": "00000 10101 01110 11111 01110 10101 00000",
}
FONT: dict[str, np.ndarray] = {
    ch: np.array([[c == "1" for c in row] for row in rows.split()], dtype=bool)
    for ch, rows in _FONT_ROWS.items()
}
GLYPH_W, GLYPH_H = 5, 7


def fold_text(text: str) -> str:
    """Map any text to the font's characters: upper case, accents dropped (``Đường Lê Lợi`` →
    ``DUONG LE LOI``), unknown characters as ``?``."""
    out = []
    for ch in unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D")):
        if unicodedata.combining(ch):
            continue
        up = ch.upper()
        out.append(up if up in FONT else ("?" if not ch.isspace() else " "))
    return "".join(out)


def render_mask(lines: list[str], scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise ``lines`` (already folded) at integer ``scale``.

    Returns ``(glyph, outline)`` boolean masks of the same shape: glyph pixels, and a one-unit
    ring around them. Cost: proportional to the text area; called once per text change.
    """
    cols = max((len(s) for s in lines), default=0)
    cell_w, cell_h = GLYPH_W + 1, GLYPH_H + 2
    h, w = len(lines) * cell_h + 2, cols * cell_w + 2
    small = np.zeros((h, w), dtype=bool)
    for r, line in enumerate(lines):
        for c, ch in enumerate(line):
            y, x = 1 + r * cell_h + 1, 1 + c * cell_w
            small[y:y + GLYPH_H, x:x + GLYPH_W] = FONT.get(ch, FONT["?"])
    ring = small.copy()
    ring[1:, :] |= small[:-1, :]
    ring[:-1, :] |= small[1:, :]
    ring[:, 1:] |= small[:, :-1]
    ring[:, :-1] |= small[:, 1:]
    ring[1:, 1:] |= small[:-1, :-1]
    ring[:-1, :-1] |= small[1:, 1:]
    ring[1:, :-1] |= small[:-1, 1:]
    ring[:-1, 1:] |= small[1:, :-1]
    ring &= ~small
    big = np.ones((scale, scale), dtype=bool)
    return np.kron(small, big).astype(bool), np.kron(ring, big).astype(bool)


def format_offset(offset: timedelta | None) -> str:
    """``UTC+07:00``, ``UTC-03:30``, ``UTC+00:00``."""
    minutes = round((offset or timedelta()).total_seconds() / 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@dataclass
class _Patch:
    text: tuple[str, ...]
    y0: int
    x0: int
    values: np.ndarray  # Y values to write (235 glyph, 16 outline)
    mask: np.ndarray    # where to write them
    cmask: np.ndarray   # chroma positions to neutralise (half resolution)


class TextOverlay:
    """Node name and local date/time (with UTC offset) in one corner of the main stream.

    ``position``: one of :data:`POSITIONS`. ``scale``: pixel size of a font dot (``0`` = auto:
    one dot per 240 rows of picture, so 3 at 720p, 4 at 1080p). When the wall clock is not
    synchronised the time line says so (``CLOCK UNSYNCED``): a picture must never claim a time
    it cannot vouch for.
    """

    def __init__(self, name: str, timezone: str | tzinfo = "UTC", *, position: str = "top-left",
                 scale: int = 0, margin: int = 8, show_name: bool = True) -> None:
        if position not in POSITIONS:
            raise ValueError(f"overlay position must be one of {', '.join(POSITIONS)}, got {position!r}")
        if scale < 0 or scale > 16:
            raise ValueError(f"overlay scale must be 0 (auto) .. 16, got {scale}")
        self.tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self.name = fold_text(name).strip()
        self.position, self.scale, self.margin, self.show_name = position, scale, margin, show_name
        self._patch: _Patch | None = None
        self.renders = 0

    def lines(self, utc: datetime, synced: bool = True) -> tuple[str, ...]:
        """The text for wall time ``utc`` (aware): ``("DEMO NODE", "2026-11-22 07:05:09 UTC+07:00")``."""
        local = utc.astimezone(self.tz)
        stamp = f"{local:%Y-%m-%d %H:%M:%S} {format_offset(local.utcoffset())}"
        if not synced:
            stamp += " CLOCK UNSYNCED"
        return (self.name, stamp) if self.show_name and self.name else (stamp,)

    def _scale_for(self, height: int) -> int:
        return self.scale or max(1, height // 240)

    def _build(self, text: tuple[str, ...], width: int, height: int) -> _Patch:
        scale = self._scale_for(height)
        glyph, ring = render_mask(list(text), scale)
        # Never larger than the frame: crop the patch (a tiny frame shows what fits).
        ph, pw = min(glyph.shape[0], height), min(glyph.shape[1], width)
        glyph, ring = glyph[:ph, :pw], ring[:ph, :pw]
        m = min(self.margin, max(0, height - ph), max(0, width - pw))
        y0 = m if self.position.startswith("top") else height - ph - m
        x0 = m if self.position.endswith("left") else width - pw - m
        y0, x0 = y0 & ~1, x0 & ~1  # even, so the chroma grid lines up
        ph, pw = min(ph, height - y0), min(pw, width - x0)
        glyph, ring = glyph[:ph, :pw], ring[:ph, :pw]
        values = np.where(glyph, 235, 16).astype(np.uint8)
        mask = glyph | ring
        ch, cw = (ph + 1) // 2, (pw + 1) // 2
        padded = np.zeros((ch * 2, cw * 2), dtype=bool)
        padded[:ph, :pw] = mask
        cmask = padded.reshape(ch, 2, cw, 2).any(axis=(1, 3))
        self.renders += 1
        return _Patch(text, y0, x0, values, mask, cmask)

    def apply(self, main: np.ndarray, width: int, height: int, utc: datetime,
              synced: bool = True) -> None:
        """Burn the text into ``main`` (yuv420p, modified in place) for wall time ``utc``.

        Cost: one masked copy of the text patch (plus a re-render when the second changes).
        """
        text = self.lines(utc, synced)
        patch = self._patch
        if patch is None or patch.text != text or patch.values.shape[0] > height:
            patch = self._patch = self._build(text, width, height)
        ph, pw = patch.mask.shape
        y = main[patch.y0:patch.y0 + ph, patch.x0:patch.x0 + pw]
        np.copyto(y, patch.values, where=patch.mask)
        if main.shape[0] >= height * 3 // 2 and width % 2 == 0 and height % 2 == 0:
            q = height // 4
            try:
                u = main[height:height + q].reshape(height // 2, width // 2)
                v = main[height + q:height + 2 * q].reshape(height // 2, width // 2)
            except ValueError:  # padded rows: leave the chroma alone
                return
            ch, cw = patch.cmask.shape
            cy, cx = patch.y0 // 2, patch.x0 // 2
            for plane in (u, v):
                region = plane[cy:cy + ch, cx:cx + cw]
                np.copyto(region, np.uint8(128), where=patch.cmask[:region.shape[0], :region.shape[1]])
