"""Hardware-first H.264 encoder selection, each candidate proven by encoding a test frame.

Order (see :func:`default_candidates`): the camera's own encoder when the source already
delivers H.264 (picamera2's hardware encoder, an IP camera), then ``h264_v4l2m2m`` (the Pi 4's
VideoCore codec), then the other hardware encoders this PyAV build lists (NVENC, QSV, AMF,
VAAPI..., each only where its device and driver exist), then ``libx264`` ultrafast/zerolatency
as the last resort. A codec *listed* by FFmpeg is not a codec that *works*: FFmpeg builds list
``h264_v4l2m2m`` on every machine, so each candidate is opened at the real stream size and
fed a test frame until a keyframe comes out. The first that passes is used; every rejected
candidate keeps its reason, for the log and for diagnostics.

Cost: a failing hardware probe takes ≈1-50 ms, the libx264 probe ≈20-60 ms at 1080p here.
Thread: call once at start, before the encoder thread runs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from hw.encode.base import Encoder, EncoderError
from hw.encode.rate import CRF_ENCODERS, RateSettings
from hw.media import Frame, StreamInfo

log = logging.getLogger(__name__)

#: The software encoder every PyAV wheel bundles; always last.
SOFTWARE = "libx264"
#: The camera's own encoder (picamera2 hardware/libav encoder, or an IP camera's stream).
SOURCE = "source"
#: Known hardware H.264 encoders in preference order for a small node.
HARDWARE_ORDER = ("h264_v4l2m2m", "h264_nvenc", "h264_qsv", "h264_vaapi", "h264_amf",
                  "h264_mf", "h264_videotoolbox", "h264_omx")
FALLBACKS = ("libx264", "fail")
PROFILES = ("baseline", "main", "high")


@dataclass
class Attempt:
    """One candidate's probe: ``ok``, the reason when not, and how long the probe took."""

    name: str
    ok: bool
    reason: str = ""
    probe_ms: float = 0.0


@dataclass
class EncoderReport:
    """What selection did: the chosen encoder and every attempt in order."""

    chosen: str
    attempts: list[Attempt] = field(default_factory=list)
    forced: bool = False

    @property
    def rejected(self) -> dict[str, str]:
        return {a.name: a.reason for a in self.attempts if not a.ok}

    def as_dict(self) -> dict[str, object]:
        return {"chosen": self.chosen, "forced": self.forced,
                "attempts": [{"name": a.name, "ok": a.ok, "reason": a.reason,
                              "probe_ms": round(a.probe_ms, 1)} for a in self.attempts]}

    def summary(self) -> str:
        rej = "; ".join(f"{k}: {v}" for k, v in self.rejected.items())
        return f"encoder {self.chosen}" + (f" (rejected: {rej})" if rej else "")


def h264_encoders() -> list[str]:
    """H.264 encoders this PyAV/FFmpeg build lists (listed ≠ usable). Cost: ≈10 ms, once."""
    import av

    out: list[str] = []
    for name in sorted(av.codecs_available):
        try:
            codec = av.Codec(name, "w")
        except Exception:  # decoders, unknown names
            continue
        if codec.type == "video" and codec.name != "libx264rgb" and (
                codec.id == av.Codec("libx264", "w").id) and codec.name not in out:
            out.append(codec.name)
    return out


def default_candidates(*, source_encoded: bool = False,
                       available: list[str] | None = None) -> list[str]:
    """The ordered candidate list for this machine: ``source`` when the camera delivers H.264,
    the known hardware encoders this build lists, any other H.264 encoder it lists (a future
    hardware one), then ``libx264``."""
    available = h264_encoders() if available is None else available
    names = [SOURCE] if source_encoded else []
    names += [n for n in HARDWARE_ORDER if n in available]
    names += [n for n in available if n not in names and n != SOFTWARE]
    names.append(SOFTWARE)
    return names


def _test_frame(width: int, height: int, seq: int) -> Frame:
    """A frame with structure (gradient + moving bar) so encoders cannot shortcut it."""
    y = np.add.outer(np.arange(height, dtype=np.uint16), np.arange(width, dtype=np.uint16))
    y = (y * 255 // max(1, width + height - 2)).astype(np.uint8)
    x0 = (seq * 16) % max(1, width - 16)
    y[:, x0:x0 + 16] = 235
    main = np.concatenate([y, np.full((height // 2, width), 128, np.uint8)])
    return Frame(seq=seq, mono=seq / 30.0, utc=datetime(2026, 1, 1, tzinfo=UTC),
                 width=width, height=height, main=main, lores=y[::8, ::8])


def probe_encoder(encoder: Encoder, stream: StreamInfo, *, frames: int = 8,
                  timeout_s: float = 5.0) -> tuple[bool, str]:
    """Open ``encoder`` and encode up to ``frames`` test frames (then flush) until a keyframe
    in Annex-B form comes out. Returns (ok, reason). The encoder is closed afterwards: a fresh
    one is built for real use (after a flush, FFmpeg encoders take no more frames).

    Runs in a helper thread so a hardware encoder that hangs in its driver costs ``timeout_s``
    at worst instead of the node's start-up.
    """
    result: list[tuple[bool, str]] = []

    def run() -> None:
        import av.logging

        # FFmpeg says *why* a hardware encoder fails only in its log ("Could not find a valid
        # device", "Cannot load libcuda.so.1"): capture this thread's errors for the reason.
        with av.logging.Capture(local=True) as logs:
            _run()
        if result and not result[0][0]:
            said = [m.strip() for lvl, _, m in logs if lvl <= av.logging.ERROR and m.strip()]
            if said:
                result[0] = (False, "; ".join(dict.fromkeys(said[:2])))

    def _run() -> None:
        try:
            encoder.start(stream)
            packets = []
            for i in range(frames):
                packets += encoder.encode(_test_frame(stream.width, stream.height, i))
                if any(p.keyframe for p in packets):
                    break
            packets += encoder.flush()
            if not packets:
                result.append((False, f"no packet out of {frames} test frames"))
            elif not any(p.keyframe for p in packets):
                result.append((False, "no keyframe in the test output"))
            elif not packets[0].data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
                result.append((False, "output is not Annex-B H.264"))
            else:
                result.append((True, ""))
        except Exception as exc:  # the reason is the report
            result.append((False, _reason(exc)))
        finally:
            try:
                encoder.close()
            except Exception:
                log.debug("closing probe encoder failed", exc_info=True)

    import av.logging

    level = av.logging.get_level()
    if level is None or level < av.logging.ERROR:
        av.logging.set_level(av.logging.ERROR)  # PyAV 18 keeps FFmpeg's log off by default
    t = threading.Thread(target=run, name=f"probe-{getattr(encoder, 'name', '?')}", daemon=True)
    t.start()
    t.join(timeout_s)
    if level is None or level < av.logging.ERROR:
        av.logging.set_level(level)
    if t.is_alive():
        return False, f"probe did not finish within {timeout_s:g} s"
    return result[0]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace("\n", " ")[:200]


def rate_for(name: str, rate: RateSettings | None) -> RateSettings | None:
    """``rate`` as encoder ``name`` can take it: a CRF setting becomes its bitrate target for an
    encoder without CRF (hardware: bitrate and intra period)."""
    if rate is None or rate.crf is None or name in CRF_ENCODERS:
        return rate
    return RateSettings(rate.bitrate_kbps, rate.gop_s, None, rate.maxrate_kbps, rate.bufsize_kbps)


def make_encoder(name: str, *, bitrate_kbps: int, gop_s: float, profile: str = "high",
                 preset: str = "ultrafast", rate: RateSettings | None = None) -> Encoder:
    """Build (not open) the encoder called ``name`` (an FFmpeg encoder name); ``rate`` (the
    storage budget's settings) overrides ``bitrate_kbps``/``gop_s``."""
    from hw.encode.libav import LibavEncoder

    return LibavEncoder(bitrate_kbps, gop_s, codec=name, preset=preset, profile=profile,
                        rate=rate_for(name, rate))


def open_encoder(candidates: list[str] | None, stream: StreamInfo, *, bitrate_kbps: int,
                 gop_s: float, profile: str = "high", preset: str = "ultrafast",
                 fallback: str = "libx264", source_encoded: bool = False,
                 factory=None, rate: RateSettings | None = None) -> tuple[Encoder, EncoderReport]:
    """Choose and open the encoder for ``stream``.

    ``candidates`` ``None`` or empty: :func:`default_candidates` (the platform order). A
    non-empty list is a config override, tried in its order; with ``fallback="libx264"`` the
    software encoder is appended when missing, with ``"fail"`` it is not and start-up fails with
    :class:`EncoderError` naming every rejection. ``source`` (the camera's own H.264) passes
    when ``source_encoded`` and returns the passthrough encoder.

    ``rate``: the storage budget's settings (CRF for libx264, bitrate + intra period for the
    others); ``None``: ``bitrate_kbps`` with a cap at twice it.
    Returns the encoder, already started (``start(stream)`` called), and the report.
    ``factory(name) -> Encoder`` replaces :func:`make_encoder` in tests.
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    forced = bool(candidates)
    names = list(candidates) if forced else default_candidates(source_encoded=source_encoded)
    if forced and fallback == "libx264" and SOFTWARE not in names:
        names.append(SOFTWARE)

    def build(name: str) -> Encoder:
        if factory is not None:
            return factory(name)
        return make_encoder(name, bitrate_kbps=bitrate_kbps, gop_s=gop_s, profile=profile,
                            preset=preset, rate=rate)

    report = EncoderReport(chosen="", forced=forced)
    listed: list[str] | None = None
    for name in names:
        t0 = time.perf_counter()
        if name == SOURCE:
            if source_encoded:
                from hw.encode.passthrough import PassthroughEncoder

                enc: Encoder = PassthroughEncoder()
                enc.start(stream)
                report.attempts.append(Attempt(name, True))
                report.chosen = name
                log.info("encoder: the camera's own H.264 (passthrough)")
                return enc, report
            report.attempts.append(Attempt(name, False, "the camera source delivers raw frames"))
            continue
        if factory is None:
            listed = h264_encoders() if listed is None else listed
            if name not in listed:
                report.attempts.append(Attempt(name, False, "not an H.264 encoder in this FFmpeg build"))
                continue
        ok, reason = probe_encoder(build(name), stream)
        ms = (time.perf_counter() - t0) * 1000
        report.attempts.append(Attempt(name, ok, reason, ms))
        if not ok:
            log.info("encoder %s rejected: %s", name, reason)
            continue
        enc = build(name)
        try:
            enc.start(stream)
        except Exception as exc:  # passed the probe, failed now: record and go on
            report.attempts[-1] = Attempt(name, False, f"reopen failed: {_reason(exc)}", ms)
            continue
        report.chosen = name
        log.info("%s", report.summary())
        return enc, report
    tried = "; ".join(f"{a.name}: {a.reason}" for a in report.attempts) or "no candidates"
    hint = (" (encoder.fallback = \"fail\": set it to \"libx264\" or fix encoder.candidates)"
            if forced and fallback == "fail" else "")
    raise EncoderError(f"no H.264 encoder could be opened — {tried}{hint}")
