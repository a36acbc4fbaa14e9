"""`config check` refuses every config `run` refuses, with exit 2 and the field named (issue 8,
items 5 and 8): one validation path used by both, checked against this machine's files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from node.cli import main

# (name, config text with {tmp} for the test directory, field named, words in the message)
CASES = [
    ("unknown time zone", "[node]\ntimezone = 'Vietnam/Hanoi'\n", "node.timezone", "unknown time zone"),
    ("inverted luma thresholds", "[daynight]\nluma_night_below = 120.0\nluma_day_above = 60.0\n",
     "daynight.luma_day_above", "above luma_night_below"),
    ("inverted light thresholds", "[daynight]\nlight_night_below = 0.5\nlight_day_above = 0.5\n",
     "daynight.light_day_above", "above light_night_below"),
    ("prefix '#'", "[mqtt]\ntopic_prefix = '#'\n", "mqtt.topic_prefix", "'#'"),
    ("prefix with '+'", "[mqtt]\ntopic_prefix = 'ward+3'\n", "mqtt.topic_prefix", "'+'"),
    ("empty prefix", "[mqtt]\ntopic_prefix = ''\n", "mqtt.topic_prefix", "empty"),
    ("prefix of two levels", "[mqtt]\ntopic_prefix = 'city/ward3'\n", "mqtt.topic_prefix", "'/'"),
    ("storage is a file", "[storage]\npath = '{tmp}/afile'\n", "storage.path", "is a file"),
    ("storage under /proc", "[storage]\npath = '/proc/camnode'\n", "storage.path", "virtual"),
    ("storage read-only", "[storage]\npath = '{tmp}/ro/rec'\n", "storage.path", "read-only"),
    ("signing key not a key", "[record]\nsigning_key = '{tmp}/afile'\n", "record.signing_key",
     "expected a 32-byte seed"),
    ("missing password file", "[mqtt]\npassword_file = '{tmp}/nosuch'\n", "mqtt.password_file",
     "No such file"),
    ("missing CA", "[mqtt]\ntls_ca = '{tmp}/nosuch.crt'\n", "mqtt.tls_ca", "no such file"),
    ("CA not a certificate", "[mqtt]\ntls_ca = '{tmp}/afile'\n", "mqtt.tls_ca", "not a usable CA"),
    ("client certificate without key", "[mqtt]\ntls_cert = '{tmp}/afile'\n", "mqtt.tls_cert",
     "go together"),
    ("missing model", "[detect]\nmodel = 'nosuch.tflite'\n", "detect.model", "no such file"),
    ("missing source file", "[camera]\nsource = '{tmp}/nosuch.mp4'\n", "camera.source", "no such file"),
    ("camera password for a file source", "[camera]\nsource = 'synthetic'\npassword_file = '{tmp}/afile'\n",
     "camera.password_file", "only for an IP camera"),
    ("camera URL holding a password too",
     "[camera]\nsource = 'rtsp://admin:x@cam/s'\npassword_file = '{tmp}/afile'\n",
     "camera.password_file", "name the user and no password"),
    ("camera URL naming no user", "[camera]\nsource = 'rtsp://cam/s'\npassword_file = '{tmp}/afile'\n",
     "camera.password_file", "name the user"),
    ("missing camera password", "[camera]\nsource = 'rtsp://admin@cam/s'\npassword_file = '{tmp}/nosuch'\n",
     "camera.password_file", "No such file"),
]


@pytest.fixture
def machine(tmp_path):
    """A directory with an ordinary file and a read-only mount in it."""
    (tmp_path / "afile").write_text("hello, not a key nor a certificate\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a read-only tmpfs (tests run as root): {r.stderr.strip()}")
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def _config(tmp: Path, text: str) -> Path:
    f = tmp / "node.toml"
    body = text.format(tmp=tmp)
    if "[detect]" not in body:  # the model is not what these cases are about
        body += "\n[detect]\nenabled = false\n"
    if "[storage]" not in body:
        body += f"\n[storage]\npath = '{tmp}/rec'\n"
    f.write_text(body)
    return f


@pytest.mark.parametrize(("name", "text", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_check_and_run_refuse_the_same_configs(machine, capsys, name, text, field, words):
    cfg = _config(machine, text)
    assert main(["config", "check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f": {field}: " in err and words in err, err
    # one line a problem, no traceback
    assert all(line.startswith("camnode: config error: ") for line in err.strip().splitlines()), err
    assert main(["run", "--config", str(cfg)]) == 2  # refused before anything starts
    err = capsys.readouterr().err
    assert f": {field}: " in err and words in err, err


def test_a_good_config_passes_both(machine, capsys, shared_dir):
    models = shared_dir / "models"
    cfg = machine / "node.toml"
    cfg.write_text(f"[storage]\npath = '{machine}/rec'\n[detect]\n"
                   f"model = '{models}/ssd_mobilenet_v1_coco_quant.tflite'\n"
                   f"labels = '{models}/coco_labels.txt'\n"
                   f"[record]\nsigning_key = '{machine}/later.key'\n")
    assert main(["config", "check", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "not provisioned yet" in out  # a key provisioning writes later: a warning


def test_link_refuses_a_wildcard_prefix_and_says_so(caplog):
    """Item 27: a link built with a bad prefix logs why it does not connect (never silent)."""
    from node.clock import FakeClock
    from node.link.mqtt import MqttLink

    link = MqttLink(host="127.0.0.1", port=1, node_id="p", prefix="ward/#", clock=FakeClock())
    link.start()
    assert "mqtt.topic_prefix" in (link.last_error or "")
    assert any("topic_prefix" in r.getMessage() for r in caplog.records)
