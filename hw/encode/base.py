"""The ``Encoder`` → ``Output`` seam (picamera2's split, without its god class).

An :class:`Encoder` turns :class:`~hw.media.Frame` pixels into H.264
:class:`~hw.media.EncodedPacket`\\ s; the node's encoder thread hands every packet, in order,
to a :class:`FanOut`, which delivers it to each :class:`Output` (today the recorder). Outputs
are added and removed while running. The frame and packet types themselves are in
:mod:`hw.media`.

Packets carry Annex-B H.264 (start codes, SPS/PPS in-band before each keyframe), which is
what hardware encoders and RTSP depacketisers deliver and what the fragmented MP4 muxer
accepts.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from hw.media import EncodedPacket, Frame, StreamInfo

log = logging.getLogger(__name__)

class EncoderError(RuntimeError):
    """An encoder could not be opened or failed while encoding."""


class Output(Protocol):
    """Receives every encoded packet. ``write`` runs on the encoder thread: keep it short.

    ``write`` must not raise for I/O problems it can survive (a full disk): it records the
    fault (see ``health()``) and keeps going.
    """

    def start(self, stream: StreamInfo) -> None: ...

    def write(self, packet: EncodedPacket) -> None: ...

    def stop(self) -> None: ...


class Encoder(Protocol):
    """Turns frames into packets (``encode``; ``flush`` at the end). Delivering them is the
    caller's job (:class:`FanOut`)."""

    name: str

    def start(self, stream: StreamInfo) -> StreamInfo: ...

    def encode(self, frame: Frame) -> list[EncodedPacket]: ...

    def flush(self) -> list[EncodedPacket]: ...

    def close(self) -> None: ...


class FanOut:
    """Delivers packets to a changing list of outputs, in order, isolating their failures.

    Thread: ``write`` on the encoder thread; ``add``/``remove`` from any thread.
    An output that raises is logged (once per kind of error) and kept; the others still get
    the packet — a broken live view must never stop the recorder.
    """

    def __init__(self) -> None:
        self._outputs: list[Output] = []
        self._lock = threading.Lock()
        self._stream: StreamInfo | None = None
        self.errors: dict[str, int] = {}

    def start(self, stream: StreamInfo) -> None:
        with self._lock:
            self._stream = stream
            outs = list(self._outputs)
        for out in outs:
            out.start(stream)

    def add(self, output: Output) -> None:
        with self._lock:
            self._outputs.append(output)
            stream = self._stream
        if stream is not None:
            output.start(stream)

    def remove(self, output: Output) -> None:
        with self._lock:
            if output in self._outputs:
                self._outputs.remove(output)
        output.stop()

    @property
    def outputs(self) -> list[Output]:
        with self._lock:
            return list(self._outputs)

    def write(self, packet: EncodedPacket) -> None:
        for out in self.outputs:
            try:
                out.write(packet)
            except Exception as exc:  # an output must not take the others down
                key = f"{type(out).__name__}: {type(exc).__name__}"
                if key not in self.errors:
                    log.exception("output %s failed", type(out).__name__)
                self.errors[key] = self.errors.get(key, 0) + 1

    def stop(self) -> None:
        for out in self.outputs:
            try:
                out.stop()
            except Exception:
                log.exception("output %s failed to stop", type(out).__name__)
