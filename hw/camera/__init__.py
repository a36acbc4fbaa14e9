"""Camera backends behind one seam (:class:`hw.camera.base.FrameSource`).

Backends are imported only when chosen, so a board without a library never imports it.
"""

from __future__ import annotations

from hw.camera.base import FrameSource, SourceError


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
    options: dict | None = None,
) -> FrameSource:
    """Build the backend named by ``spec`` (see ``camera.source`` in the config).

    ``options``: backend keyword arguments — for ``picamera2``/``csi`` see
    :class:`hw.camera.picamera2.Picamera2Source` (bitrate_kbps, gop_s, profile,
    hardware_encoder, overlay...), for PyAV sources :class:`hw.camera.pyav.PyAVSource`
    (passthrough, analysis_fps, backoff_s, max_retries). Unknown keys raise ``TypeError``.
    """
    if spec in ("picamera2", "csi"):
        from hw.camera.picamera2 import Picamera2Source

        return Picamera2Source(width, height, fps, lores, clock, max_frames=max_frames,
                               **(options or {}))
    if spec in ("synthetic", "demo"):
        from hw.camera.synthetic import SyntheticSource

        return SyntheticSource(width, height, fps, lores, clock, realtime=realtime, max_frames=max_frames)
    from hw.camera.pyav import PyAVSource

    return PyAVSource(spec, width, height, fps, lores, clock, realtime=realtime, loop=loop,
                      max_frames=max_frames, **(options or {}))


__all__ = ["FrameSource", "SourceError", "open_source"]
