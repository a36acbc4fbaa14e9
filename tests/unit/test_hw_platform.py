"""Platform probe on fixture /proc and /sys trees of a Pi 4, a Pi 5 and a Jetson Orin Nano.

The fixture files follow the kernel's documented formats (device tree strings NUL-separated,
thermal zones in millidegrees, the firmware's ``get_throttled`` in hex, MMC CID fields).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hw.platform import _kind, decode_throttled, probe

BOARDS = Path(__file__).resolve().parents[1] / "fixtures" / "boards"


def test_pi4():
    info = probe(BOARDS / "pi4", vcgencmd=lambda: pytest.fail("sysfs must be preferred"))
    assert info.model == "Raspberry Pi 4 Model B Rev 1.4"
    assert (info.kind, info.soc, info.pi_revision, info.memory_mb) == ("pi4", "bcm2711", "c03114", 3794)
    assert info.hardware_h264  # bcm2835-codec-encode
    assert [d.path for d in info.video_devices if d.role == "encoder"] == ["/dev/video11"]
    assert info.csi and info.cameras == []
    assert info.temperatures() == {"cpu-thermal": 52.6}
    flags = info.throttled()
    assert flags["under_voltage"] and flags["under_voltage_occurred"] and flags["throttled"]
    assert not flags["soft_temp_limit"]
    assert info.recommended_pin_factory == "auto" and info.header_gpio_chip == 0
    (sd,) = info.storage
    assert (sd.type, sd.product, sd.manufacturer_id, sd.date) == ("SD", "SC32G", "0x000003", "07/2023")
    assert sd.size_bytes == 62333952 * 512 and sd.written_bytes == 2345678 * 512
    assert sd.life_time is None  # SD cards do not report wear
    assert info.jetson_release is None


def test_pi5():
    info = probe(BOARDS / "pi5", vcgencmd=lambda: None)
    assert (info.kind, info.soc) == ("pi5", "bcm2712")
    assert not info.hardware_h264  # no H.264 encoder block on the Pi 5
    assert info.csi and info.cameras == []
    assert {d.role for d in info.video_devices} == {"csi", "decoder", "isp"}
    assert info.temperatures() == {"cpu-thermal": 61.4}
    assert info.throttle_file.endswith("soc@107c000000:firmware/get_throttled")
    assert not any(info.throttled().values())
    assert info.recommended_pin_factory == "lgpio"
    assert info.header_gpio_chip == 0  # RP1 moved to gpiochip0 with kernel 6.6.45
    assert info.storage[0].product == "EB1QT"


def test_jetson():
    info = probe(BOARDS / "jetson")
    assert info.kind == "jetson" and info.soc == "tegra234"
    assert info.jetson_release == "R36.3.0"
    assert info.pi_revision is None and info.throttled() is None
    assert [d.path for d in info.cameras] == ["/dev/video0", "/dev/video1"]
    assert info.csi  # vi-output (Argus) node
    assert not info.hardware_h264  # Orin Nano: no NVENC
    temps = info.temperatures()
    assert temps["gpu-thermal"] == 46.2 and info.soc_temperature() == 48.5
    assert info.recommended_pin_factory == "none"
    assert info.storage[0].life_time == "0x01 0x02" and info.storage[0].pre_eol == "0x01"
    d = info.describe()
    assert d["kind"] == "jetson" and d["storage"][0]["type"] == "MMC"


def test_jetson_with_nvenc_node(tmp_path):
    root = tmp_path / "j"
    shutil.copytree(BOARDS / "jetson", root, symlinks=True)
    (root / "dev").mkdir()
    (root / "dev/v4l2-nvenc").write_text("")
    assert probe(root).hardware_h264


def test_temperatures_are_live_reads(tmp_path):
    root = tmp_path / "pi"
    shutil.copytree(BOARDS / "pi4", root, symlinks=True)
    info = probe(root)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("81000\n")
    (root / "sys/devices/platform/soc/soc:firmware/get_throttled").write_text("80008\n")
    assert info.temperatures() == {"cpu-thermal": 81.0}
    flags = info.throttled()
    assert flags["soft_temp_limit"] and flags["soft_temp_limit_occurred"] and not flags["under_voltage"]


def test_undervoltage_hwmon_and_cached_vcgencmd(tmp_path):
    root = tmp_path / "pi"
    shutil.copytree(BOARDS / "pi4", root, symlinks=True)
    (root / "sys/devices/platform/soc/soc:firmware/get_throttled").unlink()
    assert probe(root).throttled() == {"under_voltage": True}
    shutil.rmtree(root / "sys/class/hwmon")
    calls = []
    info = probe(root, vcgencmd=lambda: calls.append(1) or "throttled=0x20002\n")
    a, b = info.throttled(), info.throttled()
    assert a == b and a["freq_capped"] and a["freq_capped_occurred"] and len(calls) == 1


def test_generic_pc_tree(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("model name\t: Intel(R) Xeon(R)\n")
    assert probe(tmp_path).h264_encoders == []  # not listed unless asked
    info = probe(tmp_path, encoders=True)
    assert "libx264" in info.h264_encoders and "h264_v4l2m2m" in info.h264_encoders
    assert info.kind == "generic" and info.model == "unknown"
    assert info.temperatures() == {} and info.throttled() is None and not info.hardware_h264
    assert info.describe()["pin_factory"] == "none"


@pytest.mark.parametrize("model, revision, kind", [
    ("Raspberry Pi Zero 2 W Rev 1.0", "902120", "pi_zero2w"),
    ("Raspberry Pi 3 Model B Plus Rev 1.3", "a020d3", "pi3"),
    ("Raspberry Pi Compute Module 4 Rev 1.0", "b03140", "cm4"),
    ("Raspberry Pi 5 Model B Rev 1.0", None, "pi5"),
    ("Raspberry Pi Model B Rev 2", "000e", "pi"),  # old-style code, unknown model name
])
def test_board_kind_from_revision_code(model, revision, kind):
    assert _kind(model, [], revision, None) == kind


def test_decode_throttled():
    assert decode_throttled(0) == dict.fromkeys(decode_throttled(0), False)
    assert [k for k, v in decode_throttled(0x50005).items() if v] == [
        "under_voltage", "throttled", "under_voltage_occurred", "throttled_occurred"]

