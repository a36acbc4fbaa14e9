"""How an encoder spends bits: one value object, translated per encoder family.

The storage budget (``node.record.budget``) decides a :class:`RateSettings`; each encoder turns
it into its own knobs:

* **libx264** (software, here and on a Pi 5): constant quality (CRF) with a VBV cap —
  ``crf``, ``vbv-maxrate`` = ``maxrate_kbps``, ``vbv-bufsize`` = ``bufsize_kbps``. A still
  street costs a fraction of the cap; a busy one is held at the cap.
* **bitrate encoders** (``h264_v4l2m2m`` on a Pi 4, picamera2's ``H264Encoder``, other
  hardware): a target bitrate and an intra period. They have no CRF, so the budget loop steers
  the bitrate itself.

The keyframe interval (``gop_s``) is part of the settings: a long one saves bits on a still
scene (the budget's default is 4 s); segments and clips still cut at keyframes.
Thread/cost: pure values.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Encoder names whose rate is steered by CRF (quality); every other encoder takes a bitrate.
CRF_ENCODERS = ("libx264",)


@dataclass(frozen=True, slots=True)
class RateSettings:
    """``crf`` None: bitrate mode (``bitrate_kbps`` is the target). ``maxrate_kbps`` caps the
    short-term rate (VBV) in both modes where the encoder supports it."""

    bitrate_kbps: int
    gop_s: float
    crf: float | None = None
    maxrate_kbps: int | None = None
    bufsize_kbps: int | None = None

    def __post_init__(self) -> None:
        if self.bitrate_kbps <= 0 or self.gop_s <= 0:
            raise ValueError("bitrate and keyframe interval must be positive")
        if self.crf is not None and not 0 <= self.crf <= 51:
            raise ValueError(f"crf {self.crf} outside 0..51")

    @classmethod
    def fixed(cls, bitrate_kbps: int, gop_s: float) -> RateSettings:
        """The pre-budget behaviour: average bitrate, VBV cap at twice it."""
        return cls(bitrate_kbps, gop_s, None, 2 * bitrate_kbps, 2 * bitrate_kbps)

    def gop_frames(self, fps: float) -> int:
        return max(1, round(self.gop_s * fps))

    def x264_params(self, fps: float) -> str:
        """The ``x264-params`` string for libx264 (fixed GOP, no scene cuts)."""
        g = self.gop_frames(fps)
        parts = [f"scenecut=0:keyint={g}:min-keyint={g}"]
        if self.crf is not None:
            parts.append(f"crf={self.crf:g}")
        if self.maxrate_kbps:
            parts.append(f"vbv-maxrate={self.maxrate_kbps}:vbv-bufsize="
                         f"{self.bufsize_kbps or 2 * self.maxrate_kbps}")
        return ":".join(parts)

    def describe(self) -> dict[str, object]:
        return {"crf": self.crf, "bitrate_kbps": self.bitrate_kbps, "maxrate_kbps": self.maxrate_kbps,
                "bufsize_kbps": self.bufsize_kbps, "gop_s": self.gop_s}
