"""Where the model looks, and the pixels it gets: crops around motion, sampled to the model input.

The model sees square crops of the *main* frame (colour), chosen from the motion regions
found on the lores luma frame:

1. motion boxes (lores pixels) are scaled to main pixels and merged while they lie closer
   than ``merge_gap`` of the frame's short side;
2. each group becomes a square around its box, at least ``min_crop`` of the short side (a
   person far away is upscaled, never cut) and widened by a margin; a square larger than
   ``whole_frame_above`` of the short side means "large motion": the whole frame is used
   (stretched to the model input, as the SSD was trained);
3. the crop is sampled at the model input size straight from the yuv420p planes and only
   those samples are converted to RGB (BT.601 limited range, lookup tables): ≈0.8 ms for
   300x300 in numpy, independent of the main resolution; a crop smaller than the model
   input (a small, far person) is interpolated bilinearly, ≈2 ms (nearest-neighbour
   enlargement hides small people from the SSD);
4. when the regions are more groups than crops and all small, or when nothing tells where to
   look (after a re-baseline), :func:`plan_tiles` gives the whole frame and/or its 2x2
   overlapping tiles.

Why colour and not luma replicated to 3 channels: measured on ``one-by-one-person-detection.mp4``
(whole frames, person class, score ≥ 0.5), luma-only input loses recall against RGB (see
``docs/vision.md`` for the figures), and the colour crop costs about the same, because only
the sampled pixels are converted.

Thread: any (pure functions); the node calls them on the inference thread.
"""

from __future__ import annotations

import numpy as np

from node.vision.boxes import Box, Crop, centre_inside, merge_boxes


def plan_crops(boxes: list[Box], width: int, height: int, *, min_crop: float = 0.35,
               margin: float = 0.25, merge_gap: float = 0.08, whole_frame_above: float = 0.8,
               max_crops: int = 2, tiles_for_small: float = 0.0, model_px: int = 0) -> list[Crop]:
    """Square crops (main pixels) covering ``boxes`` (main pixels); see the module docstring.

    ``model_px`` (the model's input side): the smallest crop is never larger than that, so a
    small region is seen at the main stream's own resolution (at 4K, 0.35 of the short side
    would shrink it 2.5x first).

    More groups than ``max_crops`` fall back to the whole frame (one call instead of many),
    or, when every group is smaller than ``tiles_for_small`` of the short side, to the
    tiles of :func:`plan_tiles` that hold them (up to four calls).
    """
    if not boxes:
        return []
    short = min(width, height)
    groups = merge_boxes(boxes, int(merge_gap * short))
    whole = Crop(0, 0, width, height)
    if len(groups) > max_crops:
        if tiles_for_small and max(max(b[2] - b[0], b[3] - b[1]) for b in groups) < tiles_for_small * short:
            # Many small regions: the tiles holding them (each twice the scale of the whole
            # frame), rather than the whole frame where small people vanish.
            tiles = [t for t in plan_tiles(width, height, whole=False)
                     if any(centre_inside((t.x, t.y, t.x + t.w, t.y + t.h), g) for g in groups)]
            return tiles
        return [whole]
    crops = []
    for x0, y0, x1, y1 in groups:
        side = int(max(x1 - x0, y1 - y0) * (1.0 + 2 * margin))
        floor = int(min_crop * short)
        side = max(side, min(floor, model_px) if model_px else floor)
        if side > whole_frame_above * short:
            return [whole]
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        x = min(max(0, cx - side // 2), width - side)
        y = min(max(0, cy - side // 2), height - side)
        crops.append(Crop(x, y, side, side))
    return crops


def plan_tiles(width: int, height: int, overlap: float = 0.25, whole: bool = True) -> list[Crop]:
    """The whole frame and 2x2 tiles overlapping by ``overlap`` of a tile: the tiling plan.

    Used when motion cannot tell where to look (right after a re-baseline: someone already
    standing in the scene is part of the new background) and when motion regions are too
    many for crops: a tile shows a small, far person twice as large as the whole frame does
    (on ``night-person-walking.avi`` the person is found on 94 % of the frames with tiles,
    41 % on the whole frame). Costs five model calls (four without ``whole``).
    """
    tw, th = int(width / (2 - overlap)), int(height / (2 - overlap))
    tiles = [Crop(x, y, tw, th) for y in (0, height - th) for x in (0, width - tw)]
    return ([Crop(0, 0, width, height)] if whole else []) + tiles


# BT.601 limited range, as lookup tables (int16): R = Y' + Rv, G = Y' + Gu + Gv, B = Y' + Bu.
_I = np.arange(256, dtype=np.float32)
_Y = np.round(1.164 * (_I - 16)).astype(np.int16)
_RV = np.round(1.596 * (_I - 128)).astype(np.int16)
_GU = np.round(-0.392 * (_I - 128)).astype(np.int16)
_GV = np.round(-0.813 * (_I - 128)).astype(np.int16)
_BU = np.round(2.017 * (_I - 128)).astype(np.int16)


def _sample_grid(crop: Crop, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre sample positions (rows, columns) of ``crop`` at ``size``."""
    ow, oh = size
    xs = crop.x + ((np.arange(ow) + 0.5) * (crop.w / ow)).astype(np.intp)
    ys = crop.y + ((np.arange(oh) + 0.5) * (crop.h / oh)).astype(np.intp)
    return ys, xs


def crop_rgb(main: np.ndarray, width: int, height: int, crop: Crop, size: tuple[int, int],
             smooth: bool = True) -> np.ndarray:
    """Sample ``crop`` of a yuv420p frame (PyAV layout) at ``size`` and convert only that to RGB.

    A crop at least as large as ``size`` is sampled nearest-neighbour at pixel centres (``take``
    along each axis: 3x faster than a 2-D fancy index). A smaller crop (a small, far person,
    enlarged for the model) is interpolated bilinearly when ``smooth``: nearest-neighbour
    enlargement turns a 17x49 px person into blocks the SSD does not recognise (measured on
    ``night-person-walking.avi``, an 84 px crop around the person: person ≥ 0.5 on 0/63 frames
    nearest-neighbour, 63/63 bilinear). BT.601 limited range (as H.264 cameras deliver)
    through int16 lookup tables. Cost: ≈0.8 ms for 300x300 here (≈2 ms bilinear), whatever the
    main resolution.
    """
    ow, oh = size
    planes = main[height:].reshape(2, height // 2, width // 2)
    if smooth and (crop.w < ow or crop.h < oh):
        y = _bilinear(main[:height], crop.x, crop.y, crop.w, crop.h, size)
        u = _bilinear(planes[0], crop.x / 2, crop.y / 2, crop.w / 2, crop.h / 2, size)
        v = _bilinear(planes[1], crop.x / 2, crop.y / 2, crop.w / 2, crop.h / 2, size)
    else:
        ys, xs = _sample_grid(crop, size)
        y = main[:height].take(ys, axis=0).take(xs, axis=1)
        ys2, xs2 = ys >> 1, xs >> 1
        u = planes[0].take(ys2, axis=0).take(xs2, axis=1)
        v = planes[1].take(ys2, axis=0).take(xs2, axis=1)
    yy = _Y.take(y)
    out = np.empty((oh, ow, 3), np.uint8)
    t = yy + _RV.take(v)
    out[..., 0] = np.clip(t, 0, 255, out=t)
    t = yy + _GU.take(u)
    t += _GV.take(v)
    out[..., 1] = np.clip(t, 0, 255, out=t)
    t = yy + _BU.take(u)
    out[..., 2] = np.clip(t, 0, 255, out=t)
    return out


def _bilinear(plane: np.ndarray, x: float, y: float, w: float, h: float, size: tuple[int, int]) -> np.ndarray:
    """Region ``x, y, w, h`` (pixels, may be fractional) of ``plane`` resampled bilinearly at
    ``size`` (pixel-centre aligned, edges clamped); uint8. Rows first, then columns."""
    ow, oh = size
    ph, pw = plane.shape
    xs = x + (np.arange(ow, dtype=np.float32) + 0.5) * (w / ow) - 0.5
    ys = y + (np.arange(oh, dtype=np.float32) + 0.5) * (h / oh) - 0.5
    np.clip(xs, 0, pw - 1, out=xs)
    np.clip(ys, 0, ph - 1, out=ys)
    x0, y0 = xs.astype(np.intp), ys.astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, pw - 1), np.minimum(y0 + 1, ph - 1)
    fx, fy = xs - x0, (ys - y0)[:, None]
    lo, hi = int(x0[0]), int(x1[-1]) + 1  # only the columns the crop needs
    top = plane[:, lo:hi].take(y0, axis=0).astype(np.float32)
    rows = top + (plane[:, lo:hi].take(y1, axis=0) - top) * fy
    left = rows.take(x0 - lo, axis=1)
    out = left + (rows.take(x1 - lo, axis=1) - left) * fx
    return (out + 0.5).astype(np.uint8)


def crop_luma3(image: np.ndarray, crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """The same crop of a luma plane (or of the Y rows of a yuv420p frame), replicated to 3
    channels: the model input when a source delivers no colour (lores only)."""
    ys, xs = _sample_grid(crop, size)
    y = image.take(ys, axis=0).take(xs, axis=1)
    return np.repeat(y[:, :, None], 3, axis=2)
