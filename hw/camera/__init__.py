"""Camera backends behind one seam (:class:`hw.camera.base.FrameSource`).

Backends are imported only when chosen, so a board without a library never imports it.
"""

from __future__ import annotations

from hw.camera.base import Frame, FrameSource, SourceError


def open_source(
    spec: str,
    width: int,
    height: int,
    fps: float,
    lores: tuple[int, int],
    clock,
    *,
    realtime: bool = True,
    loop: bool = True,
    max_frames: int | None = None,
) -> FrameSource:
    """Build the backend named by ``spec`` (see ``camera.source`` in the config)."""
    if spec in ("synthetic", "demo"):
        from hw.camera.synthetic import SyntheticSource

        return SyntheticSource(width, height, fps, lores, clock, realtime=realtime, max_frames=max_frames)
    from hw.camera.pyav import PyAVSource

    return PyAVSource(spec, width, height, fps, lores, clock, realtime=realtime, loop=loop,
                      max_frames=max_frames)


__all__ = ["Frame", "FrameSource", "SourceError", "open_source"]
