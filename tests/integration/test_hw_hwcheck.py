"""``make hwcheck`` end to end: fixture board trees, a real PyAV camera source and encoder
probe, gpiozero mock pins (their history proves IR toggled and the filter moved)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPWMPin

from node.config import config_from_dict
from node.hwcheck import main, render, run_checks

REPO = Path(__file__).resolve().parents[2]
BOARDS = REPO / "tests" / "fixtures" / "boards"
CAMERA = {"source": "lavfi:testsrc2=size=320x240:rate=15", "width": 320, "height": 240,
          "lores_width": 160, "lores_height": 120, "realtime": False}
GPIO = {"factory": "mock", "ir_pin": 17, "ir_pwm": True, "ircut_mode": "pulse", "ircut_pin": 23,
        "ircut_pin_b": 24, "led_pin": 25, "light_mode": "digital", "light_pin": 5}


def by_name(checks):
    return {c.name: c for c in checks}


def test_all_checks_pass_on_a_pi5_tree():
    cfg = config_from_dict({"camera": CAMERA, "gpio": GPIO})
    factory = MockFactory(pin_class=MockPWMPin)
    checks = by_name(run_checks(cfg, root=str(BOARDS / "pi5"), frames=5, pin_factory=factory,
                                sleep=lambda s: None, vcgencmd=lambda: None))
    assert {k: c.status for k, c in checks.items()} == dict.fromkeys(
        ["platform", "temperatures", "storage", "camera", "encoder", "gpio"], "PASS")
    assert "Raspberry Pi 5" in checks["platform"].summary
    assert checks["platform"].facts["pin_factory"] == "lgpio"
    assert checks["camera"].facts["frames"] == 5
    assert checks["encoder"].facts["chosen"] == "libx264"
    assert "h264_v4l2m2m" in checks["encoder"].summary
    # The pins tell what really happened: IR lit then off; filter pulsed to night, then day.
    assert [s.state for s in factory.pin(17).states][-2:] == [1.0, 0.0]
    assert [s.state for s in factory.pin(24).states].count(1) == 1  # one night pulse
    assert [s.state for s in factory.pin(23).states].count(1) >= 2  # day at start and after
    assert "left in safe state" in checks["gpio"].summary


def test_pi4_undervoltage_fails_and_forced_encoder_fails():
    cfg = config_from_dict({"camera": CAMERA, "gpio": GPIO,
                            "encoder": {"candidates": ["h264_v4l2m2m"], "fallback": "fail"}})
    checks = by_name(run_checks(cfg, root=str(BOARDS / "pi4"), frames=3,
                                pin_factory=MockFactory(pin_class=MockPWMPin), sleep=lambda s: None))
    assert checks["temperatures"].status == "FAIL" and "under_voltage" in checks["temperatures"].summary
    assert checks["encoder"].status == "FAIL"
    assert "h264_v4l2m2m" in checks["encoder"].summary and "encoder.fallback" in checks["encoder"].summary
    text = render(list(checks.values()))
    assert text.splitlines()[-1].endswith("2 failed")


def test_camera_that_does_not_open_is_a_fail(tmp_path):
    cfg = config_from_dict({"camera": {**CAMERA, "source": str(tmp_path / "missing.mp4")}})
    checks = by_name(run_checks(cfg, root=str(BOARDS / "jetson"), frames=3))
    assert checks["camera"].status == "FAIL" and "file not found" in checks["camera"].summary
    assert checks["encoder"].status == "PASS"  # still probed at the configured size
    assert checks["gpio"].status == "WARN"     # nothing configured
    assert checks["platform"].facts["pin_factory"] == "none"


def test_cli_json_and_safe_state(tmp_path, capsys):
    conf = tmp_path / "node.toml"
    conf.write_text('[gpio]\nfactory = "mock"\nir_pin = 17\nircut_mode = "level"\nircut_pin = 22\n'
                    '[camera]\nsource = "lavfi:testsrc2=size=160x120:rate=10"\nwidth = 160\n'
                    'height = 120\nlores_width = 80\nlores_height = 60\n')
    assert main(["--config", str(conf), "--safe-state"]) == 0
    assert "IR off" in capsys.readouterr().out
    rc = main(["--config", str(conf), "--json", "--frames", "3", "--root", str(BOARDS / "pi5")])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and [c["name"] for c in report][-1] == "gpio"
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2


def test_module_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "node.hwcheck", "--frames", "3", "--root",
                          str(BOARDS / "jetson")], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "NVIDIA Jetson Orin Nano" in out.stdout and "hwcheck:" in out.stdout


def test_camnode_hwcheck_on_a_provisioned_node(tmp_path):
    """Issue 8, item 18: the bench test is a subcommand of the installed program (the node has
    no Makefile), and it drives the pins provisioning wrote for the documented wiring."""
    from provisioning.cli import main as provision

    assert provision(["node", "--id", "pole-1", "--broker", "127.0.0.1", "--out", str(tmp_path / "w"),
                      "--no-detect", "--source", "synthetic"]) == 0
    toml = (tmp_path / "w" / "pole-1" / "node.toml").read_text()
    assert 'factory = "auto"' in toml
    cfg = tmp_path / "node.toml"
    cfg.write_text(toml.replace('factory = "auto"', 'factory = "mock"'))  # no header on this machine
    out = subprocess.run([sys.executable, "-m", "node", "hwcheck", "--config", str(cfg), "--frames", "3",
                          "--root", str(BOARDS / "pi5")], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert f"config: {cfg}" in out.stdout
    gpio = next(line for line in out.stdout.splitlines() if " gpio " in line)
    assert gpio.startswith("PASS") and "IR" in gpio and "LED" in gpio, out.stdout
