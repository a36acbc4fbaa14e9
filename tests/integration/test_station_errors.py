"""Every station command says why it did not do what was asked, in one line, with exit 1
(exit 2 for a bad command line) — against real sockets and a real mosquitto."""

from __future__ import annotations

import socket

import pytest

from node.localbroker import LocalBroker, free_port
from station.cli import main as station
from tests.integration.test_tls import _pki

#: every subcommand that talks to the broker, with its own arguments
COMMANDS = [
    ["watch", "--seconds", "1"],
    ["fleet", "--seconds", "1", "--every", "0.2"],
    ["diag", "pole-1", "--timeout", "1"],
    ["ir", "pole-1", "on"],
    ["cmd", "pole-1", "help"],
    ["clip", "pole-1", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T00:01:00Z"],
]


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.startswith("camnode-station: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_connection_refused(cmd, capsys, tmp_path):
    if cmd[0] == "clip":
        cmd = [*cmd, "--out", str(tmp_path)]
    assert station([*cmd, "--port", str(free_port())]) == 1
    assert "connection refused by 127.0.0.1:" in _err(capsys)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_unknown_host(cmd, capsys, tmp_path):
    if cmd[0] == "clip":
        cmd = [*cmd, "--out", str(tmp_path)]
    assert station([*cmd, "--host", "no.such.host.invalid"]) == 1
    assert "unknown host 'no.such.host.invalid'" in _err(capsys)


def test_no_answer_within_the_timeout(capsys):
    with socket.socket() as mute:  # accepts TCP (backlog) but never speaks MQTT
        mute.bind(("127.0.0.1", 0))
        mute.listen(4)
        port = mute.getsockname()[1]
        assert station(["diag", "pole-1", "--port", str(port), "--connect-timeout", "1"]) == 1
    assert "no MQTT answer from 127.0.0.1:" in _err(capsys)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A broker with a password file and an ACL (plain port) and a TLS port."""
    import subprocess

    d = tmp_path_factory.mktemp("secured")
    ca, cert, key = _pki(d, "ward")
    other_ca, _, _ = _pki(d, "impostor")
    pw = d / "passwd"
    for user, password in (("station-a", "right"), ("tech-a", "tech")):
        subprocess.run(["mosquitto_passwd", *([] if pw.exists() else ["-c"]), str(pw), user],
                       input=f"{password}\n{password}\n", text=True, check=True, capture_output=True)
    (d / "acl").write_text("user station-a\ntopic read camnode/#\ntopic write camnode/+/cmd/#\n"
                           "user tech-a\ntopic read camnode/+/status\n")
    plain, tls = free_port(), free_port()
    conf = (f"per_listener_settings true\nlistener {plain} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {pw}\nacl_file {d / 'acl'}\n"
            f"listener {tls} 127.0.0.1\nallow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    with LocalBroker(plain, extra_conf=conf) as b:
        yield {"plain": plain, "tls": tls, "ca": ca, "other_ca": other_ca, "dir": d, "broker": b}


def _pwfile(d, text: str):
    f = d / "pw.txt"
    f.write_text(text + "\n")
    f.chmod(0o600)
    return str(f)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_wrong_password_is_refused(cmd, secured, capsys, tmp_path):
    if cmd[0] == "clip":
        cmd = [*cmd, "--out", str(tmp_path)]
    args = [*cmd, "--port", str(secured["plain"]), "--username", "station-a",
            "--password-file", _pwfile(tmp_path, "wrong")]
    assert station(args) == 1
    err = _err(capsys)
    assert "refused station-a" in err and "not authorised" in err, err


def test_subscription_and_publish_refused_by_the_acl(secured, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CAMNODE_MQTT_PASSWORD", "tech")
    base = ["--port", str(secured["plain"]), "--username", "tech-a"]
    # mosquitto 2.0 grants any subscription (it filters what it delivers), so the refusal
    # shows at the publish: PUBACK "not authorised", not a silent wait for a reply
    assert station(["diag", "pole-1", *base]) == 1
    assert "refused tech-a publishing to camnode/pole-1/cmd/diag: Not authorized" in _err(capsys)
    # the station may subscribe but this ACL lets it write commands only, not acknowledgements
    monkeypatch.setenv("CAMNODE_MQTT_PASSWORD", "right")
    from station.connect import Connection, StationError
    from station.mqtt_session import open_session

    with open_session(Connection("127.0.0.1", secured["plain"], username="station-a", password="right"),
                      [("camnode/+/status", 1)]) as s:
        s.publish("camnode/pole-1/cmd/help", b"{}")  # allowed: PUBACK ok
        with pytest.raises(StationError, match="refused station-a publishing to camnode/pole-1/ack/event"):
            s.publish("camnode/pole-1/ack/event", b"{}")
    # the view runs with what a technician may read
    monkeypatch.setenv("CAMNODE_MQTT_PASSWORD", "tech")
    assert station(["watch", *base, "--seconds", "0.5"]) == 0


def test_tls_failures(secured, capsys):
    port = str(secured["tls"])
    assert station(["diag", "pole-1", "--port", port, "--tls-ca", str(secured["other_ca"])]) == 1
    err = _err(capsys)
    assert "TLS failure with 127.0.0.1:" in err and "certificate" in err, err
    assert station(["diag", "pole-1", "--port", port, "--connect-timeout", "3"]) == 1  # in clear to TLS
    err = _err(capsys)
    assert "give --tls-ca" in err, err
    assert station(["diag", "pole-1", "--port", str(secured["plain"]), "--tls-ca", str(secured["ca"]),
                    "--connect-timeout", "3"]) == 1  # TLS to a plain port
    assert "TLS failure" in _err(capsys)
    # the right CA: connected, subscribed, asked; nobody answers
    assert station(["diag", "pole-1", "--port", port, "--tls-ca", str(secured["ca"]),
                    "--timeout", "0.5"]) == 1
    assert "no reply from pole-1 to 'diag' within 0.5 s" in _err(capsys)


def test_no_password_on_the_command_line(capsys, tmp_path, secured):
    with pytest.raises(SystemExit) as e:
        station(["diag", "pole-1", "--password", "hunter2"])
    assert e.value.code == 2
    assert "--password-file" in capsys.readouterr().err
    assert station(["diag", "pole-1", "--password-file", str(tmp_path / "nope")]) == 2
    err = _err(capsys)
    assert "--password-file" in err and "No such file" in err, err
    # from stdin
    import io
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO("right\n")
    try:
        assert station(["watch", "--port", str(secured["plain"]), "--username", "station-a",
                        "--password-file", "-", "--seconds", "0.3"]) == 0
    finally:
        sys.stdin = old


@pytest.mark.parametrize(("args", "says"), [
    (["--listen", "localhost"], "argument --listen: 'localhost' is not HOST:PORT"),
    (["--listen", "127.0.0.1:99999"], "argument --listen: '127.0.0.1:99999' is not HOST:PORT"),
    (["--tz", "Bad/Zone"], "argument --tz: unknown time zone 'Bad/Zone'"),
    (["--tz", "../../etc/passwd"], "argument --tz: unknown time zone"),
])
def test_console_arguments_that_cannot_work_are_a_usage_error(args, says, capsys, tmp_path):
    """Refused while parsing (exit 2, one line), before anything is created (they were a
    traceback once the console had made its database)."""
    db = tmp_path / "console.db"
    with pytest.raises(SystemExit) as exc:
        station(["console", "--db", f"sqlite:///{db}", *args])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("camnode-station console: error: ") and says in last, last
    assert not db.exists()
