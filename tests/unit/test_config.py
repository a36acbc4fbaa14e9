"""Config: defaults run the demo; every kind of mistake is named precisely, exit code 2."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from node.cli import main
from node.config import Config, ConfigError, config_from_dict, example_toml, load_config, schema

BROKEN = [
    # (toml text, field path named in the error, words in the message)
    ("[camera]\nsorce = 'synthetic'\n", "camera.sorce", "unknown key"),
    ("[cameras]\nsource = 'synthetic'\n", "cameras", "unknown key"),
    ("[mqtt]\nport = 'eighteen'\n", "mqtt.port", "expected an integer"),
    ("[mqtt]\nport = 70000\n", "mqtt.port", "<= 65535"),
    ("[mqtt]\nheartbeat_s = -5\n", "mqtt.heartbeat_s", ">= 0.2"),
    ("[storage]\nsegment_s = -1.0\n", "storage.segment_s", ">="),
    ("[camera]\nsource = 'ftp://cam.local/x'\n", "camera.source", "unsupported URL scheme"),
    ("[camera]\nsource = 'rtsp://'\n", "camera.source", "no host"),
    ("[camera]\nsource = '/dev/videoX'\n", "camera.source", "/dev/videoN"),
    ("[camera]\nwidth = 1281\n", "camera.width", "even"),
    ("[camera]\nfps = 0\n", "camera.fps", "> 0"),
    ("[camera]\nrealtime = 'yes'\n", "camera.realtime", "true or false"),
    ("[node]\nid = 'Pole 7!'\n", "node.id", "a-z"),
    ("[log]\nlevel = 'LOUD'\n", "log.level", "one of"),
    ("camera = 5\n", "camera", "expected a table"),
    ("[mqtt\nport = 1\n", "", "not valid TOML"),
    ("[mqtt]\nheartbeat_s = nan\n", "mqtt.heartbeat_s", "finite"),
]


@pytest.mark.parametrize(("text", "path", "words"), BROKEN)
def test_broken_config_names_the_field(tmp_path, capsys, text, path, words):
    f = tmp_path / "node.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert err.value.path == path
    assert words in err.value.message
    assert str(f) in str(err.value)
    assert main(["config", "check", str(f)]) == 2
    assert path in capsys.readouterr().err


def test_missing_file_is_exit_2(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_real_process_exit_code_is_2(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[mqtt]\nport = 'x'\n")
    r = subprocess.run([sys.executable, "-m", "node", "run", "--config", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "mqtt.port" in r.stderr and "expected an integer" in r.stderr


def test_defaults_are_the_demo():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.camera.source == "synthetic"


def test_every_field_has_a_description_and_the_example_round_trips():
    for name, sec in schema().items():
        assert sec["description"], name
        for fname, f in sec["fields"].items():
            assert f["description"], f"{name}.{fname}"
    assert config_from_dict(tomllib.loads(example_toml())) == Config()


def test_int_accepted_for_float_and_values_kept():
    cfg = config_from_dict({"mqtt": {"heartbeat_s": 2, "port": 1884},
                            "camera": {"source": "rtsp://10.1.2.3:554/stream1"}})
    assert cfg.mqtt.heartbeat_s == 2.0 and isinstance(cfg.mqtt.heartbeat_s, float)
    assert cfg.mqtt.port == 1884


def test_schema_command_prints_toml(capsys):
    assert main(["config", "schema", "--toml"]) == 0
    out = capsys.readouterr().out
    assert "[mqtt]" in out and "heartbeat_s" in out
