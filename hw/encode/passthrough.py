"""The encoder of a source that already delivers H.264 (hardware encoder, IP camera).

It hands on ``frame.packet`` unchanged: no decode, no re-encode. Used for RTSP cameras, for
picamera2's hardware encoder output, and by the benchmark to measure the node's own cost
without the software encoder.
Thread: encoder thread. Cost: none beyond a list append.
"""

from __future__ import annotations

from hw.encode.base import EncoderError
from hw.media import EncodedPacket, Frame, StreamInfo


class PassthroughEncoder:
    name = "passthrough"

    def start(self, stream: StreamInfo) -> StreamInfo:
        return stream

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        if frame.packet is None:
            raise EncoderError("passthrough encoder got a frame without an encoded packet")
        return [frame.packet]

    def flush(self) -> list[EncodedPacket]:
        return []

    def close(self) -> None:
        pass
