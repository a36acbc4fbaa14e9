"""Crop planning, colour conversion, persistence, output selection of the TFLite seam, snapshots."""

from __future__ import annotations

import io
from datetime import datetime

import av
import numpy as np
import pytest

from hw.infer import Detector, InferError, _pick_outputs, load_runtime
from node.clock import UTC
from node.vision.boxes import Crop, merge_boxes, to_frame
from node.vision.crops import crop_rgb, plan_crops, plan_tiles
from node.vision.snapshot import draw_box, encode_jpeg
from node.vision.tracks import Found, Persistence, dedupe

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_merge_boxes_joins_near_and_keeps_far():
    boxes = [(0, 0, 10, 10), (15, 0, 25, 10), (100, 100, 110, 110)]
    assert sorted(merge_boxes(boxes, 6)) == [(0, 0, 25, 10), (100, 100, 110, 110)]
    assert len(merge_boxes(boxes, 4)) == 3
    chain = [(0, 0, 10, 10), (12, 0, 20, 10), (22, 0, 30, 10)]  # joins transitively
    assert merge_boxes(chain, 3) == [(0, 0, 30, 10)]


def test_plan_crops_squares_inside_the_frame():
    (c,) = plan_crops([(700, 10, 730, 60)], 1280, 720)  # small, near the top-right corner
    assert c.w == c.h == int(0.35 * 720)  # at least min_crop of the short side
    assert c.x >= 0 and c.x + c.w <= 1280 and c.y >= 0 and c.y + c.h <= 720
    assert c.x <= 700 and c.x + c.w >= 730 and c.y <= 10 and c.y + c.h >= 60


def test_plan_crops_large_motion_uses_the_whole_frame():
    assert plan_crops([(100, 50, 900, 700)], 1280, 720) == [Crop(0, 0, 1280, 720)]
    many = [(i * 200, 300, i * 200 + 20, 340) for i in range(5)]  # far apart: > max_crops
    assert plan_crops(many, 1280, 720) == [Crop(0, 0, 1280, 720)]
    assert len(plan_crops(many[:2], 1280, 720)) == 2
    assert plan_crops([], 1280, 720) == []


def yuv_of(rgb: tuple[int, int, int], w: int = 64, h: int = 48) -> np.ndarray:
    r, g, b = rgb
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    out = np.empty((h * 3 // 2, w), np.uint8)
    out[:h] = round(y)
    out[h : h + h // 4] = round(u)
    out[h + h // 4 :] = round(v)
    return out


@pytest.mark.parametrize("rgb", [(200, 30, 40), (20, 180, 60), (30, 60, 220), (128, 128, 128)])
def test_crop_rgb_converts_colour(rgb):
    img = crop_rgb(yuv_of(rgb), 64, 48, Crop(8, 8, 32, 32), (20, 20))
    assert img.shape == (20, 20, 3) and img.dtype == np.uint8
    assert np.abs(img.reshape(-1, 3).mean(axis=0) - rgb).max() < 6


def test_crop_rgb_samples_the_crop_not_the_frame():
    yuv = yuv_of((128, 128, 128))
    yuv[:24, :32] = 235  # top-left quarter white
    img = crop_rgb(yuv, 64, 48, Crop(0, 0, 24, 24), (12, 12))
    assert img.min() > 230  # all inside the white quarter
    whole = crop_rgb(yuv, 64, 48, Crop(0, 0, 64, 48), (16, 16))
    assert whole[:8, :8].min() > 230 and whole[12:, 12:].max() < 140


def test_to_frame_maps_model_boxes_back():
    assert to_frame((0.5, 0.25, 1.0, 0.75), Crop(100, 50, 200, 200)) == (200, 100, 300, 200)


def found(box, score=0.7, label="person", t=0.0) -> Found:
    return Found(label, score, box, int(t * 10), T, t)


def test_dedupe_keeps_the_best_of_overlapping_boxes():
    out = dedupe([found((0, 0, 10, 20), 0.6), found((1, 0, 11, 20), 0.8), found((50, 0, 60, 20), 0.5),
                  found((0, 0, 10, 20), 0.9, label="car")])
    assert sorted((f.label, f.score) for f in out) == [("car", 0.9), ("person", 0.5), ("person", 0.8)]


def test_persistence_table():
    p = Persistence(min_hits=3, max_misses=1)
    walk = [(10 * i, 0, 10 * i + 40, 100) for i in range(6)]  # a walker's box moving right
    rows = [
        ([found(walk[0], t=0.0)], 0),
        ([found(walk[1], t=0.2)], 0),
        ([found(walk[2], t=0.4)], 1),  # third hit: confirmed
        ([], 0),  # a miss
        ([found(walk[4], t=0.8)], 1),  # back: still the same track
        ([], 0),
        ([], 0),  # second miss in a row: dropped (max_misses=1)
        ([found(walk[5], t=1.4)], 0),  # a new track starts from scratch
    ]
    for i, (dets, n_confirmed) in enumerate(rows):
        out = p.update(dets, None, 0.2 * i)
        assert len(out) == n_confirmed, f"row {i}"
        if out:
            first, latest = out[0]
            assert first.mono == 0.0 and latest is dets[0]  # the track's first sighting is kept
    assert len(p.tracks) == 1 and p.tracks[0].hits == 1


def test_persistence_outside_the_checked_crops_is_not_a_miss():
    p = Persistence(min_hits=1, max_misses=0)
    p.update([found((0, 0, 40, 100))], None, 0.0)
    p.update([], [Crop(500, 0, 100, 100)], 0.2)  # looked elsewhere
    assert len(p.tracks) == 1
    p.update([], [Crop(0, 0, 200, 200)], 0.4)  # looked at it: gone
    assert p.tracks == []


def test_persistence_one_frame_false_positive_never_confirms():
    p = Persistence(min_hits=3)
    out = p.update([found((0, 0, 40, 100), 0.62)], None, 0.0)
    out += p.update([], None, 0.2)
    out += p.update([found((300, 0, 340, 100), 0.55)], None, 0.4)  # elsewhere: another track
    assert out == []


def test_persistence_a_confirmed_walker_seen_farther_on_keeps_its_track():
    """Confirmed tracks are re-checked every few seconds: a walker's next box may lie beyond the
    IoU/centre gate. Within ``reach`` of a confirmed box it is the same object (and on the move);
    a tentative track, or a box farther away, still starts a new track."""
    p = Persistence(min_hits=3)
    for i in range(3):
        p.update([found((10 * i, 0, 10 * i + 40, 100), t=0.2 * i)], None, 0.2 * i)
    assert len(p.tracks) == 1 and p.confirmed(p.tracks[0])
    out = p.update([found((60, 0, 100, 100), t=2.4)], None, 2.4)  # 40 px on: IoU 0, centre outside
    assert len(p.tracks) == 1 and p.tracks[0].hits == 4 and p.tracks[0].moved
    assert len(out) == 1 and out[0][0].mono == 0.0  # still the event's first sighting
    out = p.update([found((150, 0, 190, 100), t=4.4)], None, 4.4)  # beyond half a box: a new track
    assert out == [] and len(p.tracks) == 2 and p.tracks[1].hits == 1

    q = Persistence(min_hits=3)
    q.update([found((0, 0, 40, 100))], None, 0.0)
    q.update([found((60, 0, 100, 100), t=0.2)], None, 0.2)  # tentative: no reach
    assert [t.hits for t in q.tracks] == [1, 1]


def details(names_shapes):
    return [{"name": n, "shape": np.array(s), "index": i} for i, (n, s) in enumerate(names_shapes)]


def test_outputs_picked_by_name_tf1_layout():
    d = details([("TFLite_Detection_PostProcess", [1, 10, 4]), ("TFLite_Detection_PostProcess:1", [1, 10]),
                 ("TFLite_Detection_PostProcess:2", [1, 10]), ("TFLite_Detection_PostProcess:3", [1])])
    o = _pick_outputs(d, "m")
    assert (o["boxes"], o["classes"], o["scores"], o["count"], o["_named"]) == (0, 1, 2, 3, True)


def test_outputs_picked_by_name_and_shape_when_reordered():
    d = details([("detection_scores", [1, 25]), ("num_detections", [1]), ("detection_boxes", [1, 25, 4]),
                 ("detection_classes", [1, 25])])
    o = _pick_outputs(d, "m")
    assert (o["boxes"], o["classes"], o["scores"], o["count"]) == (2, 3, 0, 1)
    d = details([("StatefulPartitionedCall:1", [1, 10, 4]), ("StatefulPartitionedCall:3", [1, 10]),
                 ("StatefulPartitionedCall:0", [1]), ("StatefulPartitionedCall:2", [1, 10])])
    o = _pick_outputs(d, "m")
    assert o["boxes"] == 0 and o["count"] == 2 and o["_named"] is False  # decided by values later
    with pytest.raises(InferError, match="not an SSD"):
        _pick_outputs(details([("logits", [1, 2])]), "classifier.tflite")


def test_runtime_and_model_errors_are_explained(tmp_path):
    with pytest.raises(InferError, match="no TFLite runtime: nothing: ModuleNotFoundError"):
        load_runtime((("nothing", "no_such_runtime_module"),))
    with pytest.raises(InferError, match="model file not found"):
        Detector(tmp_path / "missing.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(InferError, match=r"cannot load bad\.tflite"):
        Detector(bad)


def test_person_model_detects_and_rejects_input_size(shared_dir):
    """The real model on a real frame (one-by-one clip, frame 150: a person at the table)."""
    from node.vision.video_frames import iter_clip

    det = Detector(shared_dir / "models" / "ssd_mobilenet_v1_coco_quant.tflite", threads=1)
    *_, f = iter_clip(shared_dir / "media" / "videos" / "one-by-one-person-detection.mp4", max_frames=151)
    rgb = crop_rgb(f.main, f.width, f.height, Crop(0, 0, f.width, f.height), det.input_size)
    people = [d for d in det.detect(rgb, 0.5) if d.class_id == 0]
    assert people and 0.3 < people[0].box[0] < 0.7  # standing in the middle of the picture
    assert det.last_ms > 0 and det.describe()["runtime"] in ("ai-edge-litert", "tflite-runtime")
    with pytest.raises(InferError, match="expected an image"):
        det.detect(np.zeros((10, 10, 3), np.uint8))


def test_snapshot_is_a_jpeg_with_the_box_drawn():
    w, h = 320, 240
    yuv = yuv_of((90, 90, 90), w, h)
    box = (0.25, 0.25, 0.75, 0.75)
    drawn = yuv.copy()
    draw_box(drawn, w, h, box)
    assert drawn[60, 100] == 235 and drawn[60 + 2, 100] == 16  # outer light line, inner dark line
    data = encode_jpeg(yuv, w, h, box)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    with av.open(io.BytesIO(data)) as c:
        f = next(c.decode(video=0))
        assert (f.width, f.height) == (w, h)
    assert np.array_equal(yuv, yuv_of((90, 90, 90), w, h))  # the frame itself is untouched
    small = encode_jpeg(yuv_of((90, 90, 90), 1280, 720), 1280, 720, box, max_width=400)
    with av.open(io.BytesIO(small)) as c:
        assert next(c.decode(video=0)).width == 320  # halved twice


def test_small_crops_are_enlarged_smoothly_large_ones_sampled():
    """A crop smaller than the model input is interpolated: a one-pixel step becomes a ramp."""
    w, h = 64, 48
    yuv = yuv_of((128, 128, 128), w, h)
    yuv[:h, 32:] = 200  # right half bright
    crop = Crop(24, 16, 16, 16)  # 16 px around the step, enlarged to 64
    smooth = crop_rgb(yuv, w, h, crop, (64, 64))[32, :, 1].astype(int)
    blocky = crop_rgb(yuv, w, h, crop, (64, 64), smooth=False)[32, :, 1].astype(int)
    assert len(np.unique(blocky)) == 2  # nearest pixel: a hard step
    assert len(np.unique(smooth)) >= 4 and np.all(np.diff(smooth) >= 0)  # a monotone ramp
    assert smooth[0] == blocky[0] and smooth[-1] == blocky[-1]  # same tones away from the step
    # a crop larger than the output is sampled as before (nearest pixel), smooth or not
    big = Crop(0, 0, 64, 48)
    sampled = crop_rgb(yuv, w, h, big, (32, 24), smooth=False)
    assert np.array_equal(crop_rgb(yuv, w, h, big, (32, 24)), sampled)


def test_plan_tiles_cover_the_frame_with_overlap():
    tiles = plan_tiles(1280, 720)
    assert tiles[0] == Crop(0, 0, 1280, 720) and len(tiles) == 5
    quads = tiles[1:]
    assert {(t.x, t.y) for t in quads} == {(0, 0), (1280 - quads[0].w, 0), (0, 720 - quads[0].h),
                                           (1280 - quads[0].w, 720 - quads[0].h)}
    assert all(t.w == 731 and t.h == 411 for t in quads)  # 1/1.75 of the frame: 25 % overlap
    assert len(plan_tiles(1280, 720, whole=False)) == 4


def test_many_small_regions_get_the_tiles_holding_them_not_the_whole_frame():
    small = [(100, 100, 130, 160), (1100, 120, 1130, 180), (600, 80, 620, 120)]  # three far people
    assert plan_crops(small, 1280, 720) == [Crop(0, 0, 1280, 720)]  # before: the whole frame
    tiles = plan_crops(small, 1280, 720, tiles_for_small=0.15)
    assert 1 <= len(tiles) <= 4 and Crop(0, 0, 1280, 720) not in tiles
    for x0, y0, x1, y1 in small:  # every region inside one of the tiles
        assert any(t.x <= x0 and t.y <= y0 and x1 <= t.x + t.w and y1 <= t.y + t.h for t in tiles)
    large = [(0, 0, 300, 500), (500, 100, 520, 140), (900, 100, 920, 140)]  # one is not small
    assert plan_crops(large, 1280, 720, tiles_for_small=0.15) == [Crop(0, 0, 1280, 720)]


def test_small_regions_are_cropped_at_the_main_streams_resolution():
    """At 4K, 35 % of the short side (756 px) would shrink a far person 2.5x before the model."""
    far = [(1900, 1000, 1930, 1080)]  # 30x80 px: someone 25 m away on a 4K camera
    (old,) = plan_crops(far, 3840, 2160)
    (new,) = plan_crops(far, 3840, 2160, model_px=300)
    assert old.w == 756 and new.w == 300  # 1:1 with the 300x300 model input
    assert new.x <= 1900 and new.x + new.w >= 1930 and new.y <= 1000 and new.y + new.h >= 1080
    small_frame = plan_crops([(100, 100, 120, 150)], 768, 432, model_px=300)
    assert small_frame == plan_crops([(100, 100, 120, 150)], 768, 432)  # 151 px either way
