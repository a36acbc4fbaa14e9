"""Motion detector on generated lores frames: noise, objects, light jumps, masks, regions."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from node.vision.motion import (
    MotionDetector,
    MotionParams,
    check_polygons,
    mask_cells,
)
from node.vision.movers import min_cells_by_row, regions

W, H = 320, 180


def scene(seed: int = 1) -> np.ndarray:
    """A textured static background (gradient + blocks), uint8."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.linspace(40, 200, W, dtype=np.float32), (H, 1))
    for _ in range(12):
        x0, y0 = rng.integers(0, W - 40), rng.integers(0, H - 30)
        y[y0 : y0 + 30, x0 : x0 + 40] = rng.integers(30, 220)
    return y


def frame(bg: np.ndarray, rng: np.random.Generator, sigma: float = 2.0, gain: float = 1.0,
          obj: tuple[int, int, int, int] | None = None, obj_luma: int = 20) -> np.ndarray:
    y = bg * gain + rng.normal(0, sigma, bg.shape)
    if obj is not None:
        x0, y0, x1, y1 = obj
        y[y0:y1, x0:x1] = obj_luma
    return np.clip(y, 0, 255).astype(np.uint8)


def feed(det: MotionDetector, frames, dt: float = 0.1):
    return [det.detect(f, dt) for f in frames]


def test_sensor_noise_is_not_motion():
    rng = np.random.default_rng(0)
    bg = scene()
    det = MotionDetector(W, H)
    results = feed(det, [frame(bg, rng, sigma=4.0) for _ in range(100)])
    assert not any(r.moving for r in results)


def test_walking_object_gives_a_box_around_it():
    rng = np.random.default_rng(0)
    bg = scene()
    det = MotionDetector(W, H)
    feed(det, [frame(bg, rng) for _ in range(20)])
    hits = []
    for i in range(10):
        x = 40 + 10 * i
        r = det.detect(frame(bg, rng, obj=(x, 60, x + 20, 150)), 0.1)
        assert r.moving and not r.global_change
        hits.append((x, r.boxes[0]))
    for x, (x0, y0, x1, y1) in hits:
        assert x0 <= x + 2 and x1 >= x + 18 and y0 <= 62 and y1 >= 148  # covers the object
        assert x1 - x0 <= 20 + 4 * 8 and y1 - y0 <= 90 + 4 * 8  # and not much more (8 px blocks, grown)


def test_small_changes_below_min_area_are_ignored():
    rng = np.random.default_rng(0)
    bg = scene()
    det = MotionDetector(W, H, MotionParams(min_area=0.01))
    feed(det, [frame(bg, rng) for _ in range(20)])
    r = det.detect(frame(bg, rng, obj=(100, 100, 106, 106)), 0.1)  # an insect
    assert not r.moving and r.changed > 0


@pytest.mark.parametrize("gain", [0.25, 0.6, 1.8])
def test_global_light_jump_rebaselines_instead_of_firing(gain):
    rng = np.random.default_rng(0)
    bg = scene()
    det = MotionDetector(W, H)
    feed(det, [frame(bg, rng) for _ in range(30)])
    # IR switch: the whole picture changes brightness and contrast at once (not only a gain:
    # an offset too, as the IR illuminator lights near things more).
    night = np.clip(bg * gain + 15, 0, 255)
    results = feed(det, [frame(night, rng) for _ in range(40)])
    assert not any(r.moving for r in results)
    assert results[0].global_change or results[0].changed < 0.6  # handled as one jump
    # and the detector still works afterwards
    r = det.detect(frame(night, rng, obj=(100, 40, 130, 140), obj_luma=250 if gain < 1 else 0), 0.1)
    assert r.moving


def test_slow_uniform_dimming_is_not_motion():
    rng = np.random.default_rng(0)
    bg = scene()
    det = MotionDetector(W, H)
    results = feed(det, [frame(bg, rng, gain=1.0 - 0.005 * i) for i in range(120)])  # dusk, 12 s
    assert not any(r.moving for r in results)


def test_rebaseline_signal_from_another_thread():
    rng = np.random.default_rng(0)
    bg = scene()
    det = MotionDetector(W, H, MotionParams(settle_frames=2))
    feed(det, [frame(bg, rng) for _ in range(10)])
    t = threading.Thread(target=det.rebaseline)
    t.start()
    t.join()
    shifted = np.roll(bg, 7, axis=1)  # a scene change that is not a global light jump
    results = feed(det, [frame(shifted, rng) for _ in range(6)])
    assert [r.settling for r in results[:3]] == [True, True, True]
    assert not any(r.moving for r in results)
    assert det.rebaselines == 1


def test_masked_area_never_counts():
    rng = np.random.default_rng(0)
    bg = scene()
    mask = ((0.0, 0.0, 0.5, 0.0, 0.5, 1.0, 0.0, 1.0),)  # left half
    det = MotionDetector(W, H, MotionParams(masks=mask))
    feed(det, [frame(bg, rng) for _ in range(20)])
    for i in range(10):
        r = det.detect(frame(bg, rng, obj=(20 + 8 * i, 40, 60 + 8 * i, 150)), 0.1)
        assert not r.moving
    r = det.detect(frame(bg, rng, obj=(200, 40, 240, 150)), 0.1)
    assert r.moving and r.boxes[0][0] >= 160


def test_still_object_is_absorbed_after_still_s():
    rng = np.random.default_rng(0)
    bg = scene()
    det = MotionDetector(W, H, MotionParams(still_s=1.0))
    feed(det, [frame(bg, rng) for _ in range(20)])
    results = feed(det, [frame(bg, rng, obj=(100, 60, 140, 150)) for _ in range(60)])  # parks 6 s
    assert results[0].moving
    assert not any(r.moving for r in results[-10:])


def test_regions_labelling():
    m = np.zeros((10, 12), bool)
    m[1:3, 1:4] = True  # 6 cells
    m[5:9, 6:8] = True  # 8 cells
    m[9, 8] = True  # diagonal neighbour of the second: joins it (8-connected)
    m[0, 11] = True  # single cell
    assert regions(m, 1) == [(6, 5, 9, 10), (1, 1, 4, 3), (11, 0, 12, 1)]
    assert regions(m, 2) == [(6, 5, 9, 10), (1, 1, 4, 3)]
    u = np.zeros((6, 6), bool)  # a U shape is one region
    u[0:5, 0] = u[0:5, 5] = u[4, :] = True
    assert regions(u, 1) == [(0, 0, 6, 5)]
    assert regions(np.zeros((4, 4), bool), 1) == []


def test_mask_cells():
    keep = mask_cells([(0.0, 0.0, 1.0, 0.0, 1.0, 0.5, 0.0, 0.5)], 4, 4)  # top half masked
    assert keep.tolist() == [[False] * 4, [False] * 4, [True] * 4, [True] * 4]
    tri = mask_cells([(0.0, 0.0, 1.0, 0.0, 0.0, 1.0)], 10, 10)  # upper-left triangle
    assert not tri[0, 0] and tri[9, 9] and 40 <= (~tri).sum() <= 60


def test_polygon_config_check():
    assert check_polygons([[0, 0, 1, 0, 1, 1]]) is None
    assert "3 points" in check_polygons([[0, 0, 1, 1]])
    assert "relative" in check_polygons([[0, 0, 1, 0, 1, 1.5]])


NIGHT = MotionParams(night_threshold=8.0, night_noise_factor=3.0, min_area_px=600.0, far_scale=0.3,
                     main_scale=2.0, persist_frames=2, history_frames=5, passing_step=0.5)


def dark(seed: int = 1) -> np.ndarray:
    return scene(seed) * 0.25  # an IR night: the same street, a quarter of the light


def test_min_area_in_main_pixels_shrinks_towards_the_top():
    rows = min_cells_by_row(80, 45, min_area=0.005, min_area_px=600.0, far_scale=0.3, cell_main_px=8.0)
    # 600 main px at the bottom = 600 / (4 lores px * 2 main px per lores px)^2 cells
    assert rows[-1] == round(600 / 64) and rows[0] == round(600 / 64 * (0.3 + 0.7 / 45))
    assert np.all(np.diff(rows) >= 0)
    flat = min_cells_by_row(80, 45, min_area=0.005)
    assert np.all(flat == 18)  # without min_area_px: 0.5 % of the frame everywhere


def test_night_mode_keeps_its_own_noise_map():
    rng = np.random.default_rng(0)
    det = MotionDetector(W, H, NIGHT)
    feed(det, [frame(scene(), rng, sigma=1.0) for _ in range(40)])
    day_noise = det._noise.copy()
    det.set_night(True)
    assert det.night and float(np.median(det._noise)) == pytest.approx(2.0)  # its own prior
    feed(det, [frame(dark(), rng, sigma=4.0) for _ in range(40)])
    night_noise = float(np.median(det._noise))
    assert night_noise > 2.0 * float(np.median(day_noise))  # learnt the grain
    det.set_night(False)
    assert np.array_equal(det._noise, day_noise)  # the day's map, untouched


def far_walker(bg: np.ndarray, rng: np.random.Generator, i: int, *, contrast: float = -12.0) -> np.ndarray:
    """A 5x18 lores px figure, walking 2 px a frame, a little darker than the street."""
    y = bg + rng.normal(0, 3.0, bg.shape)
    x = 40 + 2 * i
    y[100:118, x : x + 5] += contrast
    return np.clip(y, 0, 255).astype(np.uint8)


def night_detector(p: MotionParams, bg: np.ndarray, rng: np.random.Generator, sigma: float) -> MotionDetector:
    det = MotionDetector(W, H, p)
    det.set_night(True)
    feed(det, [np.clip(bg + rng.normal(0, sigma, bg.shape), 0, 255).astype(np.uint8) for _ in range(30)])
    return det


def test_a_small_dim_walker_at_night_adds_up_along_its_track():
    bg = dark()
    found = {}
    for label, p in {"tracks": NIGHT, "before": MotionParams()}.items():  # MotionParams(): before issue 14
        rng = np.random.default_rng(0)
        det = night_detector(p, bg, rng, 3.0)
        found[label] = []
        for i in range(20):
            r = det.detect(far_walker(bg, rng, i), 0.1)
            x = 40 + 2 * i
            if any(x0 <= x + 5 and x1 >= x and y0 <= 118 and y1 >= 100 for x0, y0, x1, y1 in r.boxes):
                found[label].append(i)  # a box on the walker
    assert found["tracks"] and found["tracks"][0] <= 8 and len(found["tracks"]) >= 10  # within 0.8 s, kept
    assert found["before"] == []  # day sensitivity, one frame's cells: under 0.5 % of the frame


def flecks(bg: np.ndarray, rng: np.random.Generator, n: int = 40) -> np.ndarray:
    """Rain under IR: short bright streaks at new places every frame."""
    y = bg + rng.normal(0, 2.0, bg.shape)
    for _ in range(n):
        x, y0 = rng.integers(0, W - 2), rng.integers(0, H - 12)
        y[y0 : y0 + 12, x : x + 2] += 60
    return np.clip(y, 0, 255).astype(np.uint8)


def test_rain_streaks_at_night_need_two_frames_to_count():
    bg = dark()
    moving = {}
    for persist in (1, 2):
        rng = np.random.default_rng(0)
        det = night_detector(dataclasses.replace(NIGHT, persist_frames=persist), bg, rng, 2.0)
        moving[persist] = sum(det.detect(flecks(bg, rng), 0.1).moving for _ in range(50))
    assert moving[2] <= 3 and moving[1] >= 4 * moving[2], moving
