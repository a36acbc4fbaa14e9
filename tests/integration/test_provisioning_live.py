"""Live view from provisioning: ``camnode-provision node --relay URL --live-secret FILE`` writes
the node's derived stream password and its ``[live]`` settings, remembers the relay in the
ward, refuses bad input with nothing written, and re-runs change not one byte.
(The push into the real relay with these files: tests/live/test_live_provisioned.py.)"""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path

import pytest

from node.config import load_config
from provisioning.cli import main as provision
from station.cli import build_parser as station_parser
from station.live.credentials import load_secret, node_password
from station.live.roster import RosterError, live_nodes

RELAY = "rtsp://10.8.0.1:8554"


def _state(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture
def secret_file(tmp_path) -> Path:
    """The station's live-secret, as the station makes it (0600, 64 hex characters)."""
    load_secret(tmp_path / "station")
    return tmp_path / "station" / "live-secret"


def node(out: Path, node_id: str, *extra: str) -> int:
    return provision(["node", "--id", node_id, "--out", str(out), "--source", "synthetic", "--no-detect",
                      *extra])


def test_relay_and_secret_make_the_nodes_live_settings(tmp_path, secret_file, capsys):
    out = tmp_path / "ward"
    assert node(out, "pole-7", "--broker", "127.0.0.1", "--relay", RELAY,
                "--live-secret", str(secret_file)) == 0
    assert "live view via rtsp://10.8.0.1:8554" in capsys.readouterr().out
    d = out / "pole-7"
    want = node_password(load_secret(secret_file.parent), "pole-7")
    assert (d / "live.password").read_text() == want + "\n"
    assert (d / "live.password").stat().st_mode & 0o777 == 0o600
    assert tomllib.loads((d / "node.toml").read_text())["live"] == {
        "relay": RELAY, "username": "pole-7", "password_file": "/etc/camnode/live.password"}
    assert load_config(d / "node.toml").live.relay == RELAY  # the node's own parser takes it
    # the station secret itself is nowhere in the ward (nor on the card made from it)
    station_secret = secret_file.read_bytes().strip()
    assert not any(station_secret in data for data in _state(out).values())
    assert provision(["check", str(d)]) == 0
    assert "live view via" in capsys.readouterr().out
    (d / "live.password").chmod(0o644)
    assert provision(["check", str(d)]) == 2
    assert "live.password: readable by others" in capsys.readouterr().err
    (d / "live.password").chmod(0o600)
    # a node without --relay: live view off, as before; the relay's roster is the live nodes only
    assert node(out, "pole-8") == 0
    assert "live" not in tomllib.loads((out / "pole-8" / "node.toml").read_text())
    assert not (out / "pole-8" / "live.password").exists()
    assert live_nodes(out / "ward.json") == ["pole-7"] == live_nodes(out)


def test_reruns_and_update_are_byte_identical_the_ward_remembers_the_relay(tmp_path, secret_file, capsys):
    out = tmp_path / "ward"
    live = ["--relay", RELAY, "--live-secret", str(secret_file)]
    assert node(out, "pole-7", "--broker", "127.0.0.1", *live) == 0
    before = _state(out)
    assert node(out, "pole-7", *live) == 0  # the same command again
    assert node(out, "pole-7") == 0  # without --relay: the ward remembers the node's live view
    assert node(out, "pole-7", "--update") == 0
    assert node(out, "pole-7", "--update", *live) == 0
    assert capsys.readouterr().out.count("nothing changed") == 4
    assert _state(out) == before
    # --update with another name keeps live view without the secret; only node.toml changes
    assert node(out, "pole-7", "--name", "Le Loi 12", "--update") == 0
    after = _state(out)
    assert {k for k in after if after[k] != before[k]} == {"pole-7/node.toml"}
    assert tomllib.loads(after["pole-7/node.toml"].decode())["live"]["relay"] == RELAY
    # live view turned on for an existing node is a config change: --update, then it has its password
    assert node(out, "pole-8") == 0
    capsys.readouterr()
    assert node(out, "pole-8", *live) == 3
    assert "different config" in capsys.readouterr().err
    assert node(out, "pole-8", "--update", *live) == 0
    assert (out / "pole-8" / "live.password").read_text().strip() == \
        node_password(load_secret(secret_file.parent), "pole-8")
    assert live_nodes(out) == ["pole-7", "pole-8"]
    # a new station secret: refused without --update, then the password of the new secret
    other = tmp_path / "other-secret"
    other.write_text(secrets.token_hex(32) + "\n")
    before = _state(out)
    capsys.readouterr()
    assert node(out, "pole-8", "--relay", RELAY, "--live-secret", str(other)) == 3
    err = capsys.readouterr().err
    assert "another station secret" in err and err.count("\n") == 1
    assert _state(out) == before
    assert node(out, "pole-8", "--relay", RELAY, "--live-secret", str(other), "--update") == 0
    assert (out / "pole-8" / "live.password").read_text().strip() == \
        node_password(other.read_text().strip().encode(), "pole-8")
    # live view off again: a config change (--update); its password goes, the roster drops it
    capsys.readouterr()
    assert node(out, "pole-8", "--no-live") == 3
    assert "different config" in capsys.readouterr().err
    assert node(out, "pole-8", "--no-live", "--relay", RELAY, "--live-secret", str(secret_file)) == 2
    assert "contradict" in capsys.readouterr().err
    assert node(out, "pole-8", "--no-live", "--update") == 0
    assert "live" not in tomllib.loads((out / "pole-8" / "node.toml").read_text())
    assert not (out / "pole-8" / "live.password").exists()
    assert live_nodes(out) == ["pole-7"]
    before = _state(out)
    assert node(out, "pole-8") == 0 and node(out, "pole-8", "--no-live") == 0  # stays off
    assert _state(out) == before
    # a retired node leaves the relay's roster
    assert provision(["retire", "pole-7", "--out", str(out)]) == 0
    assert live_nodes(out) == []


def test_bad_relay_or_secret_is_refused_in_one_line_and_nothing_is_written(tmp_path, secret_file, capsys):
    out = tmp_path / "ward"
    short = tmp_path / "short"
    short.write_text("abc123\n")
    trivial = tmp_path / "trivial"
    trivial.write_text("a" * 64 + "\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" * 40)
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()  # a folder: unreadable as a file, whoever runs the test (root reads 0000 files)
    good = ["--live-secret", str(secret_file)]
    cases = [
        (["--relay", "http://10.8.0.1:8554", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "10.8.0.1:8554", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "rtsp://10.8.0.1:8554/push/pole-7", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "rtsp://u:p@10.8.0.1:8554", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "rtsp://10.8.0.1:99999", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "rtsp://10.8.0.1:x", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "rtsp://:8554", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "rtsp://10.8.0.1:8554?x=1", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "rtsp://fd00::1:8554", *good], "expected rtsp://HOST:PORT"),
        (["--relay", "rtsp://10.8.0.1", *good], "give the relay's port (camnode-station relay"),
        (["--relay", "rtsp://[fd00::1]/", *good], "e.g. rtsp://[fd00::1]:8554"),
        (["--relay", RELAY], "--relay needs --live-secret"),
        (["--live-secret", str(secret_file)], "--live-secret goes with --relay"),
        (["--relay", RELAY, "--live-secret", str(tmp_path / "missing")], "no such file"),
        (["--relay", RELAY, "--live-secret", str(unreadable)], "--live-secret"),
        (["--relay", RELAY, "--live-secret", str(short)], "not a station secret"),
        (["--relay", RELAY, "--live-secret", str(trivial)], "not a station secret"),
        (["--relay", RELAY, "--live-secret", str(binary)], "not text"),
    ]
    for extra, words in cases:
        assert node(out, "pole-7", "--broker", "127.0.0.1", *extra) == 2, extra
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (extra, err)
        assert not out.exists(), extra  # not even the ward's folder
    # with a ward, a different relay is refused like a different broker (exit 3, nothing changed)
    assert node(out, "pole-7", "--broker", "127.0.0.1", "--relay", RELAY, *good) == 0
    before = _state(out)
    capsys.readouterr()
    assert node(out, "pole-9", "--relay", "rtsp://10.9.9.9:8554", *good) == 3
    err = capsys.readouterr().err
    assert "this ward's live relay is rtsp://10.8.0.1:8554" in err and err.count("\n") == 1
    assert _state(out) == before
    # IPv6 in brackets is accepted (a trailing slash dropped)
    assert node(tmp_path / "w6", "pole-1", "--broker", "[fd00::1]", "--relay", "rtsp://[fd00::1]:8554/",
                *good) == 0
    assert 'relay = "rtsp://[fd00::1]:8554"' in (tmp_path / "w6" / "pole-1" / "node.toml").read_text()


def test_the_station_relay_takes_its_nodes_from_the_ward(tmp_path, secret_file):
    out = tmp_path / "ward"
    assert node(out, "pole-7", "--broker", "127.0.0.1", "--relay", RELAY,
                "--live-secret", str(secret_file)) == 0
    from station.cli import _relay_nodes

    args = station_parser().parse_args(["relay", "--ward", str(out / "ward.json"), "pole-1"])
    assert _relay_nodes(args) == ["pole-1", "pole-7"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"users": {}}')
    with pytest.raises(RosterError, match="not a camnode ward file"):
        live_nodes(bad)
    from station.cli import main as station

    assert station(["relay", "--ward", str(bad)]) == 1
    assert station(["relay"]) == 2


def test_live_secret_command_makes_the_secret_and_never_prints_it(tmp_path, capsys):
    from station.cli import main as station

    st = tmp_path / "st"
    assert station(["live-secret", "--station-dir", str(st)]) == 0
    made = (st / "live-secret").read_text().strip()
    assert (st / "live-secret").stat().st_mode & 0o777 == 0o600 and len(made) == 64
    out = capsys.readouterr().out
    assert str(st / "live-secret") in out and made not in out
    assert station(["live-secret", "--station-dir", str(st)]) == 0  # kept, not replaced
    assert (st / "live-secret").read_text().strip() == made
    # what provisioning reads back is what the relay derives from
    assert node(tmp_path / "w", "pole-7", "--broker", "127.0.0.1", "--relay", RELAY,
                "--live-secret", str(st / "live-secret")) == 0
    assert (tmp_path / "w" / "pole-7" / "live.password").read_text().strip() == \
        node_password(load_secret(st), "pole-7")


def test_the_relay_unit_runs_the_relay_on_the_ward_and_reloads_with_sighup(tmp_path):
    """The shipped unit: a command line the station's parser takes (with --ward), reload = SIGHUP
    (what _cmd_relay handles; tests/live/test_live_provisioned.py shows the reload), and a unit
    file systemd itself accepts."""
    import shlex
    import shutil
    import subprocess

    unit = (Path(__file__).resolve().parents[2] / "station" / "systemd" / "camnode-relay.service").read_text()
    lines = dict(ln.split("=", 1) for ln in unit.splitlines() if "=" in ln and not ln.startswith("#"))
    argv = shlex.split(lines["ExecStart"])
    assert argv[0].endswith("/camnode-station")
    args = station_parser().parse_args(argv[1:])
    assert args.func.__name__ == "_cmd_relay" and args.ward == "/etc/camnode/ward.json" and args.nodes == []
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian's systemd package) is needed to check the unit"
    copy = tmp_path / "camnode-relay.service"
    copy.write_text(unit.replace(argv[0], "/bin/true"))  # the venv exists only on the post
    r = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
