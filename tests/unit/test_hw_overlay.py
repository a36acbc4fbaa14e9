"""On-screen text: what it says (local time with offset, DST, unsynced clock), where it goes,
and that it touches only its own region and re-renders only when the second changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from hw.overlay import FONT, POSITIONS, TextOverlay, fold_text, format_offset, render_mask

W, H = 1280, 720


def frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 200, size=(H * 3 // 2, W), dtype=np.uint8)


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(before != after)
    return ys.min(), ys.max(), xs.min(), xs.max()


def test_fold_text():
    assert fold_text("Đường Lê Lợi 12") == "DUONG LE LOI 12"
    assert fold_text("Pole #7 (north)") == "POLE #7 (NORTH)"
    assert fold_text("Kamera Süd → 3") == "KAMERA SUD ? 3"


def test_glyphs_are_distinct_and_sized():
    seen = {}
    for ch, g in FONT.items():
        assert g.shape == (7, 5), ch
        key = g.tobytes()
        assert key not in seen or ch == " ", (ch, seen.get(key))
        seen[key] = ch


@pytest.mark.parametrize("tz, utc, expect", [
    ("Asia/Ho_Chi_Minh", datetime(2026, 11, 22, 0, 5, 9, tzinfo=UTC), "2026-11-22 07:05:09 UTC+07:00"),
    ("Europe/Berlin", datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC), "2026-07-01 14:00:00 UTC+02:00"),
    ("Europe/Berlin", datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC), "2026-01-01 13:00:00 UTC+01:00"),
    ("America/St_Johns", datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC), "2026-01-01 08:30:00 UTC-03:30"),
    ("UTC", datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC), "2026-01-01 23:59:59 UTC+00:00"),
])
def test_local_time_with_offset(tz, utc, expect):
    assert TextOverlay("Pole 7", tz).lines(utc) == ("POLE 7", expect)


def test_dst_fall_back_hour_is_told_apart_by_offset():
    ov = TextOverlay("p", "Europe/Berlin", show_name=False)
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)   # 02:30 CEST
    second = first + timedelta(hours=1)                 # 02:30 CET, the repeated hour
    a, b = ov.lines(first)[0], ov.lines(second)[0]
    assert a[:19] == b[:19] == "2026-10-25 02:30:00"
    assert a.endswith("UTC+02:00") and b.endswith("UTC+01:00")


def test_unsynced_clock_is_shown():
    ov = TextOverlay("p", "UTC")
    assert ov.lines(datetime(2026, 1, 1, tzinfo=UTC), synced=False)[1].endswith("CLOCK UNSYNCED")


def test_format_offset():
    assert format_offset(timedelta(hours=5, minutes=45)) == "UTC+05:45"
    assert format_offset(None) == "UTC+00:00"


@pytest.mark.parametrize("position", POSITIONS)
def test_only_the_text_region_is_touched(position):
    before = frame()
    after = before.copy()
    ov = TextOverlay("Demo node", "Asia/Ho_Chi_Minh", position=position, margin=8)
    ov.apply(after, W, H, datetime(2026, 11, 22, 0, 5, 9, tzinfo=UTC))
    y0, y1, x0, x1 = changed_box(before[:H], after[:H])
    scale = 3  # auto at 720p
    text_w = len("2026-11-22 07:05:09 UTC+07:00") * 6 * scale
    assert (y1 - y0) < 2 * 9 * scale + 3 * scale and (x1 - x0) <= text_w + 2 * scale
    top, left = position.startswith("top"), position.endswith("left")
    assert (y0 <= 8 + scale) if top else (y1 >= H - 8 - scale - 1)
    assert (x0 <= 8 + scale) if left else (x1 >= W - 8 - scale - 1)
    # Luma inside: only the two drawing levels; chroma: neutral where touched.
    region = after[:H][before[:H] != after[:H]]
    assert set(np.unique(region)) <= {16, 235}
    chroma_changed = after[H:] != before[H:]
    assert chroma_changed.any() and set(np.unique(after[H:][chroma_changed])) == {128}
    # Less than 3 % of the frame was written.
    assert (before != after).sum() < 0.03 * before.size


def test_rerendered_once_per_second():
    ov = TextOverlay("Demo", "UTC")
    main = frame()
    t0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    for i in range(45):  # 3 s at 15 fps
        ov.apply(main, W, H, t0 + timedelta(seconds=i / 15))
    assert ov.renders == 3


def test_text_reads_back_from_the_pixels():
    # The glyph mask rendered into the frame equals the font's bitmaps: decode the first digit.
    ov = TextOverlay("", "UTC", scale=2, margin=4, show_name=False)
    main = np.full((H * 3 // 2, W), 100, np.uint8)
    ov.apply(main, W, H, datetime(2026, 1, 1, tzinfo=UTC))
    glyph, _ = render_mask(["2026-01-01 00:00:00 UTC+00:00"], 2)
    y0 = x0 = 4
    drawn = main[y0:y0 + glyph.shape[0], x0:x0 + glyph.shape[1]] == 235
    assert np.array_equal(drawn, glyph)
    first = drawn[2 * 2:2 * 9, 2:2 + 10][::2, ::2]  # the "2", at 1 px per dot
    assert np.array_equal(first, FONT["2"])


def test_tiny_frame_and_bad_settings():
    small = np.full((48 * 3 // 2, 64), 90, np.uint8)
    TextOverlay("A very long pole name indeed", "UTC").apply(
        small, 64, 48, datetime(2026, 1, 1, tzinfo=UTC))
    assert (small[:48] != 90).any()
    with pytest.raises(ValueError, match="position"):
        TextOverlay("x", position="middle")
    with pytest.raises(ValueError, match="scale"):
        TextOverlay("x", scale=40)
