"""What board is this? Model, SoC, temperatures, throttling, video devices, GPIO chips, SD card.

:func:`probe` is called explicitly at start (never on import) and reads only small files under
``root`` (``/`` on a node; a fixture tree in tests): the device tree model and compatible
strings, ``/proc/cpuinfo`` and ``/proc/meminfo``, ``/etc/nv_tegra_release``, and sysfs classes
``video4linux``, ``thermal``, ``gpio``, ``hwmon`` and ``block``. It never opens a device and never
starts a process. Cost: ≈1 ms.

The returned :class:`PlatformInfo` keeps the paths it found so the heartbeat's
:meth:`PlatformInfo.temperatures` and :meth:`PlatformInfo.throttled` are a handful of file reads
(≈50 µs each). Only when a Pi kernel exposes no throttling file does :meth:`throttled` run
``vcgencmd get_throttled``, at most once a minute (cached). Thread: any; no shared mutable state
except that cache, guarded by a lock.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: Pi throttling bits (``vcgencmd get_throttled`` and the firmware's sysfs file agree).
THROTTLE_BITS = {
    0: "under_voltage",
    1: "freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
    16: "under_voltage_occurred",
    17: "freq_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}

#: Pi revision-code board types (new-style codes, bits 4-11) this firmware knows by name.
PI_TYPES = {0x08: "pi3", 0x0D: "pi3", 0x0E: "pi3", 0x11: "pi4", 0x12: "pi_zero2w",
            0x13: "pi400", 0x14: "cm4", 0x17: "pi5", 0x18: "cm5", 0x19: "pi500"}
#: Boards whose VideoCore IV/VI has the hardware H.264 encoder picamera2 and h264_v4l2m2m use.
VC4_KINDS = {"pi3", "pi4", "pi400", "cm4", "pi_zero2w"}


@dataclass(frozen=True, slots=True)
class VideoDevice:
    """A V4L2 node: ``/dev/videoN``, the driver's name, and the role guessed from the name."""

    path: str
    name: str
    role: str  # "capture", "encoder", "decoder", "isp", "other"


@dataclass(frozen=True, slots=True)
class GpioChip:
    """A GPIO controller: chip index (``/dev/gpiochipN``), label, number of lines."""

    index: int | None
    label: str
    lines: int


@dataclass(frozen=True, slots=True)
class StorageDevice:
    """An MMC device (SD card or eMMC) and what the kernel says about its identity and wear.

    ``life_time``/``pre_eol`` exist for eMMC only (JEDEC ``EXT_CSD`` fields); SD cards do not
    report wear to the kernel, so for them ``written_bytes`` (since boot) is the only gauge.
    """

    name: str
    type: str
    product: str
    manufacturer_id: str
    oem_id: str
    serial: str
    date: str
    size_bytes: int
    written_bytes: int | None
    life_time: str | None = None
    pre_eol: str | None = None


@dataclass
class PlatformInfo:
    """The probe's answer. ``kind`` is one of pi3, pi4, pi400, cm4, pi_zero2w, pi5, cm5, pi500,
    pi (unknown Pi), jetson, generic."""

    root: str
    model: str
    compatible: list[str]
    kind: str
    soc: str
    pi_revision: str | None
    memory_mb: int | None
    jetson_release: str | None
    video_devices: list[VideoDevice]
    gpio_chips: list[GpioChip]
    storage: list[StorageDevice]
    thermal_zones: dict[str, str] = field(default_factory=dict)  # type -> temp file path
    throttle_file: str | None = None
    undervolt_file: str | None = None
    nvenc: bool = False
    #: H.264 encoders the PyAV/FFmpeg build *lists* (``probe(encoders=True)``); which one
    #: works is decided by probing them (:mod:`hw.encode.select`).
    h264_encoders: list[str] = field(default_factory=list)
    _vcgencmd: Callable[[], str | None] | None = field(default=None, repr=False)
    _cache: dict[str, tuple[float, object]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---------------------------------------------------------------- derived facts

    @property
    def is_pi(self) -> bool:
        return self.kind.startswith(("pi", "cm"))

    @property
    def hardware_h264(self) -> bool:
        """A hardware H.264 encoder exists: VC4's V4L2 codec (Pi 4 and older) or NVENC (Jetson
        Xavier, Orin NX/AGX — not the Orin Nano, which has none)."""
        return any(d.role == "encoder" for d in self.video_devices) or self.nvenc

    @property
    def cameras(self) -> list[VideoDevice]:
        """V4L2 capture nodes PyAV can open (USB cameras)."""
        return [d for d in self.video_devices if d.role == "capture"]

    @property
    def csi(self) -> bool:
        """A CSI camera receiver is present (use ``camera.source = "picamera2"`` on a Pi)."""
        return any(d.role == "csi" for d in self.video_devices)

    @property
    def recommended_pin_factory(self) -> str:
        """lgpio on a Pi 5 (RP1 has no legacy register interface), gpiozero's own order on older
        Pis, ``none`` on a Jetson or PC (gpiozero's factories assume a Pi header)."""
        if self.kind in ("pi5", "cm5", "pi500"):
            return "lgpio"
        return "auto" if self.is_pi else "none"

    @property
    def header_gpio_chip(self) -> int | None:
        """Index of the gpiochip behind the 40-pin header (Pi 5: RP1's, whose index moved from
        4 to 0 with kernel 6.6.45), or None when not recognised."""
        for chip in self.gpio_chips:
            if chip.label.startswith(("pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835")):
                return chip.index
        return None

    # ---------------------------------------------------------------- live readings

    def temperatures(self) -> dict[str, float]:
        """°C per thermal zone type (``cpu-thermal`` on a Pi; ``cpu-thermal``, ``gpu-thermal``...
        on a Jetson). Unreadable zones are left out. Cost: one small read per zone."""
        out: dict[str, float] = {}
        for name, path in self.thermal_zones.items():
            try:
                out[name] = round(int(Path(path).read_text().strip()) / 1000.0, 1)
            except (OSError, ValueError):
                continue
        return out

    def soc_temperature(self) -> float | None:
        """The hottest zone, the one that matters for throttling."""
        temps = self.temperatures()
        return max(temps.values()) if temps else None

    def throttled(self) -> dict[str, bool] | None:
        """Pi throttling/undervoltage flags (see :data:`THROTTLE_BITS`), or None off a Pi or when
        nothing exposes them. Reads the firmware's sysfs file; else the ``rpi_volt`` hwmon alarm
        (under-voltage only); else ``vcgencmd`` cached for 60 s."""
        if not self.is_pi:
            return None
        if self.throttle_file:
            try:
                return decode_throttled(int(Path(self.throttle_file).read_text().strip(), 16))
            except (OSError, ValueError):
                pass
        if self.undervolt_file:
            try:
                return {"under_voltage": Path(self.undervolt_file).read_text().strip() == "1"}
            except OSError:
                pass
        if self._vcgencmd is None:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get("vcgencmd")
            if hit is None or now - hit[0] > 60.0:
                hit = (now, _parse_vcgencmd(self._vcgencmd()))
                self._cache["vcgencmd"] = hit
        value = hit[1]
        return None if value is None else decode_throttled(int(value))  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        """JSON-ready facts for diagnostics and the hwcheck report."""
        return {
            "model": self.model, "kind": self.kind, "soc": self.soc,
            "pi_revision": self.pi_revision, "memory_mb": self.memory_mb,
            "jetson_release": self.jetson_release,
            "hardware_h264": self.hardware_h264, "h264_encoders": self.h264_encoders,
            "cameras": [d.path for d in self.cameras], "csi": self.csi,
            "video_devices": [{"path": d.path, "name": d.name, "role": d.role}
                              for d in self.video_devices],
            "gpio_chips": [{"index": c.index, "label": c.label, "lines": c.lines}
                           for c in self.gpio_chips],
            "pin_factory": self.recommended_pin_factory,
            "header_gpio_chip": self.header_gpio_chip,
            "storage": [_slots_dict(s) for s in self.storage],
            "temperatures": self.temperatures(),
            "throttled": self.throttled(),
        }


def _slots_dict(obj: object) -> dict[str, object]:
    return {k: getattr(obj, k) for k in obj.__slots__}  # type: ignore[attr-defined]


def decode_throttled(value: int) -> dict[str, bool]:
    """``0x50005`` → ``{"under_voltage": True, ..., "throttled_occurred": True}``."""
    return {name: bool(value >> bit & 1) for bit, name in THROTTLE_BITS.items()}


def _parse_vcgencmd(text: str | None) -> int | None:
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", text or "")
    return int(m.group(1), 16) if m else None


def _run_vcgencmd() -> str | None:
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        return subprocess.run([exe, "get_throttled"], capture_output=True, text=True,
                              timeout=2.0).stdout
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------- probe


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def probe(root: str | Path = "/", *, vcgencmd: Callable[[], str | None] | None = None,
          encoders: bool = False) -> PlatformInfo:
    """Read the board's identity and capabilities from ``root`` (see module docstring).

    ``vcgencmd`` is the fallback for throttling flags (default: run the real tool, only on a Pi
    whose kernel has no sysfs file for them). ``encoders`` also lists the H.264 encoders of the
    installed PyAV build (imports ``av``: ≈0.1 s the first time).
    """
    r = Path(root)
    model = (_read(r, "proc/device-tree/model") or _read(r, "sys/firmware/devicetree/base/model")
             or "").rstrip("\x00\n ")
    compat_raw = (_read(r, "proc/device-tree/compatible")
                  or _read(r, "sys/firmware/devicetree/base/compatible") or "")
    compatible = [c for c in compat_raw.split("\x00") if c.strip()]
    cpuinfo = _read(r, "proc/cpuinfo") or ""
    rev_m = re.search(r"^Revision\s*:\s*([0-9a-fA-F]+)", cpuinfo, re.M)
    pi_revision = rev_m.group(1).lower() if rev_m else None
    mem_m = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read(r, "proc/meminfo") or "", re.M)
    memory_mb = int(mem_m.group(1)) // 1024 if mem_m else None
    tegra = _read(r, "etc/nv_tegra_release")
    jetson_release = None
    if tegra:
        m = re.search(r"#\s*(R\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", tegra)
        jetson_release = f"{m.group(1)}.{m.group(2)}" if m else tegra.splitlines()[0].strip("# ")

    kind = _kind(model, compatible, pi_revision, jetson_release)
    soc = next((c.split(",", 1)[1] for c in reversed(compatible)
                if c.startswith(("brcm,", "nvidia,tegra"))), compatible[-1] if compatible else "")
    info = PlatformInfo(
        root=str(r), model=model or "unknown", compatible=compatible, kind=kind, soc=soc,
        pi_revision=pi_revision, memory_mb=memory_mb, jetson_release=jetson_release,
        video_devices=_video_devices(r), gpio_chips=_gpio_chips(r), storage=_storage(r),
        thermal_zones=_thermal_zones(r),
        nvenc=(r / "dev/nvhost-msenc").exists() or (r / "dev/v4l2-nvenc").exists(),
    )
    if encoders:
        from hw.encode.select import h264_encoders

        info.h264_encoders = h264_encoders()
    if info.is_pi:
        info.throttle_file = _first(r, ["sys/devices/platform/soc/soc:firmware/get_throttled",
                                        "sys/devices/platform/*/*:firmware/get_throttled"])
        for hw in sorted((r / "sys/class/hwmon").glob("hwmon*")):
            if (_read(hw, "name") or "").strip() == "rpi_volt" and (hw / "in0_lcrit_alarm").exists():
                info.undervolt_file = str(hw / "in0_lcrit_alarm")
        info._vcgencmd = vcgencmd if vcgencmd is not None else (
            _run_vcgencmd if str(r) == "/" else None)
    return info


def _first(root: Path, patterns: list[str]) -> str | None:
    for pat in patterns:
        hits = sorted(root.glob(pat))
        if hits:
            return str(hits[0])
    return None


def _kind(model: str, compatible: list[str], revision: str | None, jetson: str | None) -> str:
    if jetson or any(c.startswith("nvidia,tegra") for c in compatible) or "Jetson" in model:
        return "jetson"
    if revision:
        code = int(revision, 16)
        if code >> 23 & 1:  # new-style revision code
            kind = PI_TYPES.get(code >> 4 & 0xFF)
            if kind:
                return kind
    table = [("Raspberry Pi 5", "pi5"), ("Raspberry Pi 500", "pi500"),
             ("Compute Module 5", "cm5"), ("Raspberry Pi 400", "pi400"),
             ("Compute Module 4", "cm4"), ("Raspberry Pi 4", "pi4"),
             ("Raspberry Pi Zero 2", "pi_zero2w"), ("Raspberry Pi 3", "pi3")]
    for prefix, kind in table:
        if model.startswith(prefix):
            return kind
    if model.startswith("Raspberry Pi") or any(c.startswith("raspberrypi,") for c in compatible):
        return "pi"
    return "generic"


def _video_role(name: str) -> str:
    n = name.lower()
    if "encode" in n or n.endswith("-enc") or "nvenc" in n:
        return "encoder"
    if "decode" in n or "rpivid" in n or "hevc" in n or n.endswith("-dec"):
        return "decoder"
    if "isp" in n or "pispbe" in n or "image_fx" in n or "codec" in n:
        return "isp"
    if "unicam" in n or n.startswith("rp1-cfe") or n.startswith("vi-output"):
        # CSI receivers: a picamera2/libcamera (or Argus) camera, not a V4L2 capture for PyAV.
        return "csi"
    return "capture"


def _video_devices(root: Path) -> list[VideoDevice]:
    out = []
    base = root / "sys/class/video4linux"

    def num(p: Path) -> int:
        return int(re.sub(r"\D", "", p.name) or 0)

    for d in sorted(base.glob("video*"), key=num):
        name = (_read(d, "name") or "").strip()
        out.append(VideoDevice(f"/dev/{d.name}", name, _video_role(name)))
    return out


def _gpio_chips(root: Path) -> list[GpioChip]:
    chips = []
    for d in sorted((root / "sys/class/gpio").glob("gpiochip*")):
        label = (_read(d, "label") or "").strip()
        try:
            lines = int((_read(d, "ngpio") or "0").strip())
        except ValueError:
            lines = 0
        index = None
        dev = d / "device"
        if dev.is_symlink():
            m = re.search(r"gpiochip(\d+)$", str(Path(dev.readlink())))
            index = int(m.group(1)) if m else None
        chips.append(GpioChip(index, label, lines))
    return sorted(chips, key=lambda c: (c.index is None, c.index or 0))


def _storage(root: Path) -> list[StorageDevice]:
    out = []
    for blk in sorted((root / "sys/block").glob("mmcblk[0-9]")):
        dev = blk / "device"

        def f(name: str, dev: Path = dev) -> str:
            return (_read(dev, name) or "").strip()

        stat = (_read(blk, "stat") or "").split()
        written = int(stat[6]) * 512 if len(stat) > 6 and stat[6].isdigit() else None
        size = (_read(blk, "size") or "0").strip()
        out.append(StorageDevice(
            name=blk.name, type=f("type"), product=f("name"), manufacturer_id=f("manfid"),
            oem_id=f("oemid"), serial=f("serial"), date=f("date"),
            size_bytes=int(size) * 512 if size.isdigit() else 0, written_bytes=written,
            life_time=f("life_time") or None, pre_eol=f("pre_eol_info") or None))
    return out


def _thermal_zones(root: Path) -> dict[str, str]:
    zones: dict[str, str] = {}
    for z in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        kind = (_read(z, "type") or z.name).strip()
        if (z / "temp").exists():
            name = kind if kind not in zones else f"{kind}-{z.name}"
            zones[name] = str(z / "temp")
    return zones
