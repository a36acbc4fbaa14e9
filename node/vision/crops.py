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
   300x300 in numpy, independent of the main resolution.

Why colour and not luma replicated to 3 channels: measured on ``one-by-one-person-detection.mp4``
(whole frames, person class, score ≥ 0.5), luma-only input loses recall against RGB (see
``docs/vision.md`` for the figures), and the colour crop costs about the same, because only
the sampled pixels are converted.

Thread: any (pure functions); the node calls them on the inference thread.
"""

from __future__ import annotations

import numpy as np

from node.vision.boxes import Box, Crop, merge_boxes


def plan_crops(boxes: list[Box], width: int, height: int, *, min_crop: float = 0.35,
               margin: float = 0.25, merge_gap: float = 0.08, whole_frame_above: float = 0.8,
               max_crops: int = 2) -> list[Crop]:
    """Square crops (main pixels) covering ``boxes`` (main pixels); see the module docstring.

    More groups than ``max_crops`` fall back to the whole frame (one call instead of many).
    """
    if not boxes:
        return []
    short = min(width, height)
    groups = merge_boxes(boxes, int(merge_gap * short))
    whole = Crop(0, 0, width, height)
    if len(groups) > max_crops:
        return [whole]
    crops = []
    for x0, y0, x1, y1 in groups:
        side = int(max(x1 - x0, y1 - y0) * (1.0 + 2 * margin))
        side = max(side, int(min_crop * short))
        if side > whole_frame_above * short:
            return [whole]
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        x = min(max(0, cx - side // 2), width - side)
        y = min(max(0, cy - side // 2), height - side)
        crops.append(Crop(x, y, side, side))
    return crops


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


def crop_rgb(main: np.ndarray, width: int, height: int, crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """Sample ``crop`` of a yuv420p frame (PyAV layout) at ``size`` and convert only that to RGB.

    Nearest-neighbour sampling at pixel centres (``take`` along each axis: 3x faster than a 2-D
    fancy index), BT.601 limited range (as H.264 cameras deliver) through int16 lookup tables.
    Cost: ≈0.8 ms for 300x300 here, whatever the main resolution.
    """
    ow, oh = size
    ys, xs = _sample_grid(crop, size)
    y = main[:height].take(ys, axis=0).take(xs, axis=1)
    planes = main[height:].reshape(2, height // 2, width // 2)
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


def crop_luma3(image: np.ndarray, crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """The same crop of a luma plane (or of the Y rows of a yuv420p frame), replicated to 3
    channels: the model input when a source delivers no colour (lores only)."""
    ys, xs = _sample_grid(crop, size)
    y = image.take(ys, axis=0).take(xs, axis=1)
    return np.repeat(y[:, :, None], 3, axis=2)
