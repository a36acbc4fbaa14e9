"""When the model looks, and at what: the inference schedule of one camera.

All rates are in ``[detect]``:

* **unexplained motion** (regions not overlapping an object already tracked): at most
  ``fps`` calls a second, on crops around the regions — this is what finds a newcomer fast;
  regions inside ones a call found empty less than :data:`EMPTY_S` ago are skipped (every
  region the call's crops covered counts, also on a tracked object's re-check: the motion left
  where someone just walked out is not looked at again as soon as their event ends);
* **tentative tracks** (hit fewer than ``min_hits`` times): at ``fps``, to confirm or drop
  them quickly;
* **confirmed tracks**: every ``track_s`` while motion overlaps them, every ``still_s`` when
  they stand still. A still, tracked object is *held* in its event between checks: it cannot
  have left without causing motion. This is what keeps a person waiting at a gate in one
  event while costing one inference call every few seconds;
* **a scan** (``scan_on_rebaseline``): the whole frame and its 2x2 tiles, once, when the
  motion background was just (re)learnt (start, IR switch), with whoever stands there in it.

A call looks at one or two crops around the regions; at the 2x2 tiles holding them when they
are too many and all small (``tiles_for_small``; the whole frame otherwise). Every crop is one
model call; at most ``max_calls_s`` are made in any second (a job that would pass the budget
waits for a later frame).

Whether a confirmed track stands still is told without the model: :meth:`Scheduler.mark_moved`
compares the lores look of its box with the one at its last hit.

Thread: the analysis thread only.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from hw.media import Frame
from node.vision.boxes import Box, crop_box, grow, inside, overlap, scale_box
from node.vision.crops import plan_crops, plan_tiles
from node.vision.tracks import Persistence, patch
from node.vision.worker import Job

#: Mean absolute patch difference (luma levels) below which a tracked box "looks the same".
SAME_LEVEL = 12.0

#: How long a motion region the model found empty is not looked at again (unless it grows).
EMPTY_S = 1.0


class Scheduler:
    """Picks what the model looks at on each frame (see the module docstring).

    ``cd``: the ``[detect]`` section; ``persist``: the analyzer's tracks; ``model_px``: the
    model's input side (small regions are cropped no larger than that: main-stream resolution).
    """

    def __init__(self, cd: Any, persist: Persistence, model_px: int = 0) -> None:
        self.cd, self.persist, self.model_px = cd, persist, model_px
        self.last_job = float("-inf")
        self.last_unexplained = float("-inf")
        self.empty: list[tuple[Box, float]] = []
        self.spent: deque[tuple[float, int]] = deque()  # (time, model calls) of the last second

    def reset(self) -> None:
        """Forget every time (the source restarted its timeline)."""
        self.last_job = self.last_unexplained = float("-inf")
        self.empty.clear()
        self.spent.clear()

    def within_budget(self, now: float, calls: int) -> bool:
        """Whether ``calls`` more model calls at ``now`` keep the last second within
        ``[detect] max_calls_s`` (0: no limit); if so they are counted. A job larger than the
        budget (the five-call scan under a lower limit) runs when nothing else ran that second.
        """
        limit = self.cd.max_calls_s
        while self.spent and now - self.spent[0][0] >= 1.0:
            self.spent.popleft()
        used = sum(n for _, n in self.spent)
        if limit > 0 and used and used + calls > limit:
            return False
        self.spent.append((now, calls))
        return True

    def found_empty(self, motion: list[Box], mono: float) -> None:
        """A call at ``mono`` found nothing in these motion regions."""
        self.empty += [(b, mono) for b in motion]

    def mark_moved(self, lores: np.ndarray, w: int, h: int) -> None:
        """A confirmed track *moved* once its box no longer looks as at its last hit.

        The lores patch of the box is compared with the one taken at the hit (mean absolute
        difference after removing the mean, in luma levels). A person standing, swaying or
        gesturing stays below ``SAME_LEVEL``; someone walking away, or the empty background
        appearing, goes far above it. Sticky until the next hit. Cost: ≈10 µs a track.
        """
        lh, lw = lores.shape
        for t in self.persist.tracks:
            if t.moved or t.template is None:
                continue
            if t.box[0] <= 0.02 * w or t.box[2] >= 0.98 * w:
                # At the left/right edge someone can step out leaving the box almost unchanged.
                t.moved = True
                continue
            p = patch(lores, scale_box(t.box, lw / w, lh / h))
            t.moved = float(np.abs(p - t.template).mean()) > SAME_LEVEL

    def plan(self, frame: Frame, boxes: list[Box], colour: bool, w: int, h: int, *,
             event_open: bool, scan: bool = False) -> Job | None:
        """The job for this frame, or None. ``boxes``: motion regions in analysed-image pixels;
        ``event_open``: an object event is open (newcomers are then looked at less often);
        ``scan``: look at the whole frame in tiles (:func:`~node.vision.crops.plan_tiles`; the
        background was just re-learnt, with whoever stands in the scene in it)."""
        now = frame.mono
        if now - self.last_job < 1.0 / self.cd.fps:
            return None
        tracks = self.persist.tracks
        due = [b for b in boxes if not any(overlap(b, grow(t.box, 0.25)) for t in tracks)]
        # A motion region inside one the model found empty less than EMPTY_S ago is not looked
        # at again (the fading ghost of someone who left, a curtain): it must grow first.
        self.empty = [(c, t) for c, t in self.empty if now - t < EMPTY_S]
        due = [b for b in due if not any(inside(b, grow(c, 0.1)) for c, _ in self.empty)]
        if due and event_open and now - self.last_unexplained < self.cd.still_s:
            # An object event is open: newcomers only add to it, so look at them less often.
            due = []
        if due:
            self.last_unexplained = now
        unexplained = list(due)
        for t in tracks:
            if not self.persist.confirmed(t) or t.misses:
                interval = 0.0  # confirm a newcomer, or re-check a missed object, at once
            elif t.moved:
                interval = self.cd.track_s
            else:
                interval = self.cd.still_s
            if now - t.checked >= interval:
                due.append(t.box)
        if not due and not scan:
            return None
        if scan:
            crops = plan_tiles(w, h)
        else:
            crops = plan_crops(due, w, h, min_crop=self.cd.min_crop, tiles_for_small=self.cd.tiles_for_small,
                               model_px=self.model_px)
        if not self.within_budget(now, len(crops)):
            return None
        self.last_job = now
        image = frame.main if colour else frame.lores
        # Every motion region the crops cover is examined, not only the unexplained ones: when
        # the model finds nothing (a tracked person just left), they are all known empty.
        looked = unexplained + [b for b in boxes if b not in unexplained
                                and any(inside(b, crop_box(c)) for c in crops)]
        return Job(frame.seq, frame.mono, frame.utc, image, w, h, colour, crops, frame.lores, looked)  # type: ignore[arg-type]
