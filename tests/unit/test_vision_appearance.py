"""Appearance attributes: named colours of real pixel values, frame sides, payload fields."""

from __future__ import annotations

import numpy as np
import pytest

from node.vision.appearance import COLOUR_NAMES, Appearances, colour_indices, colours, side

# BT.601 limited-range YUV of some plain colours
RGB = {"red": (200, 30, 30), "blue": (30, 50, 190), "white": (240, 240, 240), "black": (15, 15, 18),
       "grey": (128, 128, 128), "green": (40, 160, 60), "yellow": (230, 210, 40), "orange": (240, 130, 20),
       "brown": (110, 70, 30), "purple": (120, 40, 160), "pink": (240, 110, 190)}


def rgb_to_yuv(rgb):
    r, g, b = (c / 255 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return round(y), round(u), round(v)


def frame(w=320, h=240, background="grey"):
    yuv = np.empty((h * 3 // 2, w), np.uint8)
    paint(yuv, w, h, (0, 0, 1, 1), background)
    return yuv


def paint(yuv, w, h, box, name):
    y, u, v = rgb_to_yuv(RGB[name])
    x0, y0, x1, y1 = int(box[0] * w) & ~1, int(box[1] * h) & ~1, int(box[2] * w), int(box[3] * h)
    yuv[y0:y1, x0:x1] = y
    planes = yuv[h:].reshape(2, h // 2, w // 2)
    planes[0][y0 // 2:y1 // 2, x0 // 2:x1 // 2] = u
    planes[1][y0 // 2:y1 // 2, x0 // 2:x1 // 2] = v


@pytest.mark.parametrize("name", sorted(RGB))
def test_plain_colours_get_their_names(name):
    rgb = np.array([RGB[name]], np.float32) / 255
    assert COLOUR_NAMES[colour_indices(rgb)[0]] == name


def test_person_upper_and_lower_body_and_vehicle_body():
    w, h = 320, 240
    yuv = frame(w, h, "green")
    person = (0.40, 0.10, 0.55, 0.95)
    paint(yuv, w, h, (0.40, 0.10, 0.55, 0.52), "red")  # jacket (and head)
    paint(yuv, w, h, (0.40, 0.52, 0.55, 0.95), "blue")  # trousers
    assert colours(yuv, w, h, person, "person") == {"upper": "red", "lower": "blue"}
    car = (0.05, 0.5, 0.35, 0.8)
    paint(yuv, w, h, car, "white")
    assert colours(yuv, w, h, car, "car") == {"body": "white"}
    assert colours(yuv, w, h, car, "dog") == {}
    assert colours(yuv[:h], w, h, car, "car") == {}  # luma only: no colour named


@pytest.mark.parametrize(("box", "expected"), [
    ((0.0, 0.3, 0.2, 0.9), "left"), ((0.8, 0.3, 1.0, 0.9), "right"), ((0.4, 0.0, 0.5, 0.3), "top"),
    ((0.4, 0.5, 0.5, 1.0), "bottom"), ((0.3, 0.3, 0.6, 0.7), "inside"), ((0.03, 0.0, 0.2, 0.5), "top"),
])
def test_sides(box, expected):
    assert side(box) == expected


def test_payload_gains_appearance_entry_then_exit():
    a = Appearances()
    w, h = 320, 240
    yuv = frame(w, h)
    paint(yuv, w, h, (0.0, 0.1, 0.2, 0.5), "red")
    paint(yuv, w, h, (0.0, 0.5, 0.2, 0.95), "black")
    a.observe("e1", [(0.0, 0.1, 0.2, 0.95)])
    a.best_frame("e1", yuv, w, h, (0.0, 0.1, 0.2, 0.95), "person")
    start = a.decorate({"id": "e1", "kind": "object", "phase": "start"})
    assert start["appearance"] == {"colours": {"upper": "red", "lower": "black"}, "entry": "left"}
    a.observe("e1", [(0.5, 0.1, 0.7, 0.9)])
    a.observe("e1", [(0.85, 0.1, 1.0, 0.9)])
    end = a.decorate({"id": "e1", "kind": "object", "phase": "end"})
    assert end["appearance"]["exit"] == "right" and end["appearance"]["entry"] == "left"
    assert a.decorate({"id": "e1", "kind": "object", "phase": "end"}) == {"id": "e1", "kind": "object",
                                                                          "phase": "end"}  # forgotten
    assert a.decorate({"id": "m1", "kind": "motion", "phase": "start"}) == {"id": "m1", "kind": "motion",
                                                                            "phase": "start"}
