"""Video files as :class:`~hw.camera.base.Frame` lists, timed by the video, not the wall clock.

For tests and benchmarks of the vision pipeline on recorded footage: every frame's ``mono`` is
its presentation time in seconds from the first frame, and ``utc`` is ``start_utc`` plus that.
:func:`iter_clip` yields one frame at a time (a 768x432 clip of 1394 frames would take 700 MB
of yuv420p in memory); :func:`decode_clip` keeps a list (use ``keep_main=False`` for long clips).

Cost: PyAV decode plus one luma downscale per frame (≈1-2 ms per 768x432 frame here).
Thread: any (no shared state).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from hw.camera.base import luma_downscale
from hw.media import Frame
from node.clock import UTC

#: Start of the clip's timeline when none is given (a fixed instant keeps tests deterministic).
EPOCH = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def lores_size(width: int, height: int, lores_width: int = 320) -> tuple[int, int]:
    """Lores size keeping the aspect ratio, even numbers, ``lores_width`` wide."""
    lh = max(2, round(height * lores_width / width / 2) * 2)
    return lores_width, lh


def clip_fps(path: str | Path) -> float:
    """The frame rate a file declares."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.average_rate or stream.guessed_rate or 25)


def decode_clip(path: str | Path, *, lores_width: int = 320, start_utc: datetime = EPOCH,
                max_frames: int | None = None, keep_main: bool = True) -> list[Frame]:
    """Decode a whole video file into a list of Frames (see :func:`iter_clip`)."""
    return list(iter_clip(path, lores_width=lores_width, start_utc=start_utc,
                          max_frames=max_frames, keep_main=keep_main))


def iter_clip(path: str | Path, *, lores_width: int = 320, start_utc: datetime = EPOCH,
              max_frames: int | None = None, keep_main: bool = True) -> Iterator[Frame]:
    """Yield a video file's frames one by one (memory: one frame at a time).

    ``keep_main=False`` drops the full-resolution image (motion-only runs use far less memory).
    Full-range (``yuvj420p``) input is converted to limited-range yuv420p by PyAV.
    """
    import av  # lazy: PyAV is only needed where files are read

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        tb = stream.time_base
        first_pts = None
        for seq, vf in enumerate(container.decode(stream)):
            if max_frames is not None and seq >= max_frames:
                break
            if vf.pts is None:
                t = seq / fps
            else:
                if first_pts is None:
                    first_pts = vf.pts
                t = float((vf.pts - first_pts) * tb)
            main = vf.to_ndarray(format="yuv420p")
            w, h = vf.width, vf.height
            lw, lh = lores_size(w, h, lores_width)
            lores = luma_downscale(main[:h], lw, lh)
            yield Frame(seq=seq, mono=t, utc=start_utc + timedelta(seconds=t), width=w,
                        height=h, main=main if keep_main else None,
                        lores=np.ascontiguousarray(lores))
