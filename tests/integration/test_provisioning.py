"""Provisioned credentials and ACLs on a real mosquitto: each node confined to its subtree."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from node.app import Node
from node.config import load_config
from node.localbroker import LocalBroker, free_port
from provisioning.cli import main as provision


def _client(port: int, user: str, password: str, ca: Path | None = None) -> tuple[paho.Client, dict]:
    seen: dict = {"connect": None, "puback": {}, "messages": []}
    done = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.username_pw_set(user, password)
    if ca is not None:
        c.tls_set(ca_certs=str(ca))

    def on_connect(cl, ud, flags, rc, props):
        seen["connect"] = rc
        done.set()

    c.on_connect = on_connect
    c.on_publish = lambda cl, ud, mid, rc, props: seen["puback"].__setitem__(mid, rc)
    c.on_message = lambda cl, ud, msg: seen["messages"].append(msg.topic)
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert done.wait(5)
    return c, seen


def _broker_for(out: Path, port: int, client_certs: bool = False) -> LocalBroker:
    """mosquitto with the ward's generated config, its files used where provisioning left them."""
    from provisioning.broker import BrokerLayout, broker_conf

    work = out.parent / f"broker-{port}"
    work.mkdir(exist_ok=True)
    conf = broker_conf(BrokerLayout(dir=out / "broker", port=port, bind="127.0.0.1",
                                    client_certs=client_certs))
    return LocalBroker(port, extra_conf=f"persistence_location {work}/\n" + conf, workdir=work)


@pytest.fixture
def ward(tmp_path):
    out = tmp_path / "ward"
    port = free_port()
    for node_id in ("pole-7", "pole-8"):
        assert provision(["node", "--id", node_id, "--broker", f"127.0.0.1:{port}", "--out", str(out),
                          "--source", "synthetic", "--no-detect"]) == 0
    assert provision(["station", "--out", str(out)]) == 0
    b = _broker_for(out, port).start()
    yield out, b
    b.cleanup()


def test_check_and_bad_id(tmp_path, capsys, ward):
    out, _ = ward
    assert provision(["check", str(out / "pole-7")]) == 0
    for name in ("mqtt.password", "signing.key"):
        assert (out / "pole-7" / name).stat().st_mode & 0o777 == 0o600
    assert "dirty_expire_centisecs" in (out / "pole-7" / "99-camnode.conf").read_text()
    assert "Type=notify" in (out / "pole-7" / "camnode.service").read_text()
    assert "pole-7" in capsys.readouterr().out
    assert provision(["node", "--id", "Pole 7", "--broker", "x", "--out", str(tmp_path / "o"),
                      "--no-detect"]) == 2
    assert "names are a-z" in capsys.readouterr().err
    (out / "pole-8" / "mqtt.password").chmod(0o644)
    assert provision(["check", str(out / "pole-8")]) == 2


def _state(out: Path) -> dict[str, bytes]:
    """Every file of the ward, to show that a refused or repeated request changed nothing."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_collisions_are_refused_and_reruns_change_nothing(ward, capsys):
    """Issue 8, items 3 and 20: no silent password change, no takeover of another account."""
    out, _ = ward
    before = _state(out)
    base = ["--out", str(out)]
    cases = [
        (["station", "--user", "pole-7", *base], 2, "not a station user name"),      # a node's account
        (["technician", "--user", "pole-7", *base], 2, "not a technician user name"),
        (["technician", "--user", "station", *base], 2, "not a technician user name"),
        (["node", "--id", "station", "--no-detect", *base], 2, "cannot be a node id"),  # item 20
        (["node", "--id", "station-a", "--no-detect", *base], 2, "cannot be a node id"),
        (["node", "--id", "tech-an", "--no-detect", *base], 2, "cannot be a node id"),
        (["node", "--id", "admin", "--no-detect", *base], 2, "cannot be a node id"),
        (["node", "--id", "mosquitto", "--no-detect", *base], 2, "cannot be a node id"),
        (["node", "--id", "pole-7", "--source", "rtsp://cam", "--no-detect", *base], 3, "different config"),
        (["node", "--id", "pole-7", "--prefix", "ward3", "--source", "synthetic", "--no-detect", *base], 3,
         "different config"),
        (["node", "--id", "pole-9", "--prefix", "a/b", "--no-detect", *base], 2, "prefix"),
        (["node", "--id", "pole-9", "--prefix", "#", "--no-detect", *base], 2, "prefix"),
        (["node", "--id", "pole-9", "--broker", "10.0.0.1", "--no-detect", *base], 3, "this ward's broker"),
        (["rotate", "pole-99", *base], 3, "not a user"),
        (["node", "--id", "pole-9", "--out", str(out.parent / "elsewhere"), "--no-detect"], 2,
         "give --broker"),
    ]
    for args, code, words in cases:
        assert provision(args) == code, args
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (args, err)
    # the same requests again: "nothing changed", exit 0, not one byte different
    assert provision(["node", "--id", "pole-7", "--source", "synthetic", "--no-detect", *base]) == 0
    assert provision(["station", *base]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert _state(out) == before
    assert not (out.parent / "elsewhere").exists()
    # a node on another prefix keeps the others' access (the ACL is regenerated whole)
    assert provision(["node", "--id", "pole-9", "--prefix", "ward3", "--source", "synthetic", "--no-detect",
                      *base]) == 0
    acl = (out / "broker" / "acl").read_text()
    assert "user pole-7\ntopic write camnode/pole-7/status" in acl
    assert "topic read ward3/pole-9/cmd/#" in acl and "topic read ward3/#" in acl
    assert "topic read camnode/#" in acl
    # changes are explicit: --update rewrites node.toml only; rotate gives a new password
    pw7 = (out / "pole-7" / "mqtt.password").read_bytes()
    assert provision(["node", "--id", "pole-7", "--source", "rtsp://cam", "--no-detect", "--update",
                      *base]) == 0
    assert (out / "pole-7" / "mqtt.password").read_bytes() == pw7
    assert 'source = "rtsp://cam"' in (out / "pole-7" / "node.toml").read_text()
    assert provision(["rotate", "pole-7", *base]) == 0
    assert (out / "pole-7" / "mqtt.password").read_bytes() != pw7
    # a retired name is never given out again
    assert provision(["retire", "pole-8", *base]) == 0
    assert "pole-8" not in (out / "broker" / "passwd").read_text() and "user pole-8" not in \
        (out / "broker" / "acl").read_text()
    capsys.readouterr()
    assert provision(["node", "--id", "pole-8", "--source", "synthetic", "--no-detect", *base]) == 3
    assert "retired" in capsys.readouterr().err


def test_no_secret_on_a_command_line(tmp_path, monkeypatch):
    """Item 7: mosquitto_passwd gets the password on stdin; its argv (what ps shows) never
    holds it. A wrapper on PATH records the real tool's argv."""
    import shutil
    import stat

    real = shutil.which("mosquitto_passwd")
    log = tmp_path / "argv.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "mosquitto_passwd"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    out = tmp_path / "w"
    assert provision(["node", "--id", "pole-1", "--broker", "127.0.0.1", "--out", str(out),
                      "--no-detect"]) == 0
    assert provision(["technician", "--user", "tech-an", "--out", str(out)]) == 0
    secrets = [(out / "pole-1" / "mqtt.password").read_text().strip(),
               (out / "users" / "tech-an" / "password").read_text().strip()]
    argv = log.read_text()
    assert argv.count("\n") == 2 and "-b" not in argv.split()
    assert not any(s in argv for s in secrets)
    passwd = (out / "broker" / "passwd").read_text()
    assert not any(s in passwd for s in secrets) and "pole-1:$7$" in passwd  # hashed by mosquitto


def test_a_rotation_that_fails_leaves_the_user_and_the_broker_agreeing(tmp_path, monkeypatch, capsys):
    """The broker's side of a rotation fails (here its hashing tool), or the user's (its file
    cannot be written): either way the node's password file and the broker's hash are both the
    old ones, byte for byte, and nothing is left staged (the broker changed first, then a failed
    write locked the node out); a rotation that works then changes both."""
    import stat

    out = tmp_path / "w"
    assert provision(["node", "--id", "pole-1", "--broker", "127.0.0.1", "--out", str(out),
                      "--no-detect"]) == 0
    pw_file, passwd = out / "pole-1" / "mqtt.password", out / "broker" / "passwd"
    before = (pw_file.read_bytes(), passwd.read_bytes())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    broken = bindir / "mosquitto_passwd"
    broken.write_text("#!/bin/sh\necho 'disk full' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    capsys.readouterr()
    assert provision(["rotate", "pole-1", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert "mosquitto_passwd failed: disk full" in err and "\n" not in err
    assert (pw_file.read_bytes(), passwd.read_bytes()) == before
    assert sorted(p.name for p in pw_file.parent.iterdir() if "password" in p.name) == ["mqtt.password"]
    monkeypatch.undo()
    # the user's side fails instead (its file cannot be written: a directory in the way of every
    # temporary name a write may use): the broker keeps the old password too
    blocks = [pw_file.parent / ".mqtt.password.tmp", pw_file.parent / ".mqtt.password.new.tmp"]
    for b in blocks:
        b.mkdir()
    capsys.readouterr()
    assert provision(["rotate", "pole-1", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("camnode-provision: ") and "\n" not in err, err
    assert (pw_file.read_bytes(), passwd.read_bytes()) == before
    for b in blocks:
        b.rmdir()
    assert provision(["rotate", "pole-1", "--out", str(out)]) == 0
    after = (pw_file.read_bytes(), passwd.read_bytes())
    assert after[0] != before[0] and after[1] != before[1]
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600


def run_here(node_dir: Path, storage: Path, *, heartbeat_s: float):
    """A provisioned node's config as it runs on this machine: its files where provisioning left
    them (not /etc/camnode), footage in ``storage``, a small synthetic picture, mock GPIO (no
    header here)."""
    cfg = load_config(node_dir / "node.toml")
    return cfg.replace(
        mqtt=dataclasses.replace(cfg.mqtt, heartbeat_s=heartbeat_s, tls_ca=str(node_dir / "ca.crt"),
                                 password_file=str(node_dir / "mqtt.password")),
        storage=dataclasses.replace(cfg.storage, path=str(storage), segment_s=2.0),
        record=dataclasses.replace(cfg.record, signing_key=str(node_dir / "signing.key")),
        camera=dataclasses.replace(cfg.camera, width=320, height=240, lores_width=160, lores_height=120),
        gpio=dataclasses.replace(cfg.gpio, factory="mock"),
    )


def test_provisioned_node_reaches_station_over_tls(tmp_path, ward):
    """The generated node config, broker config and CA: a real node talks TLS to the broker,
    the station reads it, and the footage verifies against the inventory's key."""
    out, b = ward
    cfg = load_config(out / "pole-7" / "node.toml")
    assert cfg.mqtt.port == b.port and cfg.mqtt.tls_ca == "/etc/camnode/ca.crt"  # TLS by default
    assert cfg.gpio.ir_pin == 18 and cfg.gpio.led_pin == 25  # the documented wiring
    cfg = run_here(out / "pole-7", tmp_path / "rec", heartbeat_s=0.3)
    st_pw = (out / "users" / "station" / "password").read_text().strip()
    st, seen = _client(b.port, "station", st_pw, ca=out / "users" / "station" / "ca.crt")
    st.subscribe("camnode/#", qos=1)
    node = Node(cfg)
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "camnode/pole-7/heartbeat" not in seen["messages"]:
            time.sleep(0.1)
        assert "camnode/pole-7/heartbeat" in seen["messages"]
        assert "camnode/pole-7/status" in seen["messages"]
        while time.monotonic() < deadline + 10 and node.recorder.health()["segments_closed"] < 2:
            time.sleep(0.2)
    finally:
        stop.set()
        th.join(20)
        st.disconnect()
        st.loop_stop()
    # the footage is signed with the provisioned key; the station verifies with the public key
    from node.record.verify import verify_store

    pub = (out / "pole-7" / "signing.pub").read_text().strip()
    assert pub in (out / "inventory.csv").read_text()
    verdict = verify_store(tmp_path / "rec", pub)
    assert verdict.ok and verdict.checked >= 2, verdict.problems
    other = (out / "pole-8" / "signing.pub").read_text().strip()
    assert not verify_store(tmp_path / "rec", other).ok  # another node's key does not match


def test_generated_pki(tmp_path):
    """Item 30: a site CA, a broker certificate naming the broker's address, TLS by default."""
    from cryptography import x509

    from provisioning.pki import covers

    out = tmp_path / "w"
    assert provision(["node", "--id", "pole-1", "--broker", "[fd00::1]", "--out", str(out),
                      "--no-detect"]) == 0
    toml = (out / "pole-1" / "node.toml").read_text()
    assert 'tls_ca = "/etc/camnode/ca.crt"' in toml and 'host = "fd00::1"' in toml and "port = 8883" in toml
    assert (out / "pole-1" / "ca.crt").read_bytes() == (out / "pki" / "ca.crt").read_bytes()
    assert (out / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (out / "broker" / "server.key").stat().st_mode & 0o777 == 0o600
    server = (out / "broker" / "server.crt").read_bytes()
    assert covers(server, "fd00::1") and not covers(server, "10.0.0.1")
    ca = x509.load_pem_x509_certificate((out / "pki" / "ca.crt").read_bytes())
    leaf = x509.load_pem_x509_certificate(server)
    leaf.verify_directly_issued_by(ca)
    assert "cafile" in (out / "broker" / "camnode.conf").read_text()
    lab = tmp_path / "lab"
    assert provision(["node", "--id", "pole-1", "--broker", "10.0.0.5", "--out", str(lab), "--no-detect",
                      "--no-tls"]) == 0
    assert "tls_ca" not in (lab / "pole-1" / "node.toml").read_text()
    assert "port = 1883" in (lab / "pole-1" / "node.toml").read_text()


def test_mounted_card_is_refused(tmp_path):
    from provisioning.broker import ProvisionError
    from provisioning.image import _refuse_mounted

    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sdz1 /media/user/bootfs vfat rw 0 0\n")
    with pytest.raises(ProvisionError, match="unmount it first"):
        _refuse_mounted(__import__("pathlib").Path("/dev/sdz"), mounts)
    _refuse_mounted(__import__("pathlib").Path("/dev/sdy"), mounts)  # another card: fine


def test_client_certificates_when_the_ward_requires_them(tmp_path, capsys):
    """Item 30's option: a ward whose broker also wants a certificate signed by its CA. The
    node's generated config carries its own; a client with the right password and no
    certificate (or one from another CA) is refused at the TLS handshake."""
    from station.cli import main as station

    out, port = tmp_path / "w", free_port()
    assert provision(["node", "--id", "pole-1", "--broker", f"127.0.0.1:{port}", "--out", str(out),
                      "--no-detect", "--source", "synthetic", "--client-certs"]) == 0
    assert provision(["station", "--user", "station-a", "--out", str(out)]) == 0
    assert "--tls-cert" in capsys.readouterr().out
    assert (out / "pole-1" / "client.key").stat().st_mode & 0o777 == 0o600
    assert "require_certificate true" in (out / "broker" / "camnode.conf").read_text()
    cfg = load_config(out / "pole-1" / "node.toml")
    assert (cfg.mqtt.tls_cert, cfg.mqtt.tls_key) == ("/etc/camnode/client.crt", "/etc/camnode/client.key")
    u = out / "users" / "station-a"
    base = ["diag", "pole-1", "--port", str(port), "--username", "station-a", "--password-file",
            str(u / "password"), "--tls-ca", str(u / "ca.crt"), "--timeout", "0.3"]
    with _broker_for(out, port, client_certs=True) as b:
        assert station(base) == 1  # no certificate: refused before any MQTT
        err = capsys.readouterr().err
        assert "TLS failure" in err or "closed the connection" in err or "cannot reach" in err, err
        assert station([*base, "--tls-cert", str(u / "client.crt"), "--tls-key", str(u / "client.key")]) == 1
        assert "no reply from pole-1" in capsys.readouterr().err  # connected, logged in, asked
        # the real node with its generated config (paths moved from /etc/camnode to the ward)
        d = out / "pole-1"
        cfg = cfg.replace(
            mqtt=dataclasses.replace(cfg.mqtt, port=b.port, tls_ca=str(d / "ca.crt"),
                                     tls_cert=str(d / "client.crt"), tls_key=str(d / "client.key"),
                                     password_file=str(d / "mqtt.password")),
            storage=dataclasses.replace(cfg.storage, path=str(tmp_path / "rec")),
            record=dataclasses.replace(cfg.record, signing_key=str(d / "signing.key")),
            camera=dataclasses.replace(cfg.camera, width=320, height=240, lores_width=160, lores_height=120),
            gpio=dataclasses.replace(cfg.gpio, factory="mock"))
        node = Node(cfg)
        stop = threading.Event()
        th = threading.Thread(target=node.run, args=(stop,))
        th.start()
        try:
            assert node.link.wait_connected(20), node.link.health()
        finally:
            stop.set()
            th.join(30)


def test_an_ip_cameras_password_goes_into_a_file_of_its_own(tmp_path, capsys):
    """``--camera-password-file``: the password into the node's camera.password (0600), node.toml
    naming the file and the user only; a password inside --source is refused (ps would show it);
    a re-run is a no-op, another password needs --update; the node's own checks pass."""
    import stat

    out = tmp_path / "w"
    pw = tmp_path / "cam.pw"
    pw.write_text("Cam#Pass:1\n")
    base = ["node", "--id", "pole-1", "--broker", "127.0.0.1", "--out", str(out), "--no-detect"]
    for args, says in (
        (["--source", "rtsp://admin:Cam%23Pass@10.0.0.9/stream"], "--source holds a password"),
        (["--source", "rtsp://10.0.0.9/stream", "--camera-password-file", str(pw)], "rtsp://USER@HOST"),
        (["--source", "synthetic", "--camera-password-file", str(pw)], "is for an IP camera"),
        (["--source", "rtsp://admin@10.0.0.9/stream", "--camera-password-file", str(tmp_path / "no")],
         "No such file"),
    ):
        capsys.readouterr()
        assert provision([*base, *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert says in err and "\n" not in err and "Cam#Pass" not in err and "Cam%23" not in err, err
        assert not out.exists()  # nothing written
    good = [*base, "--source", "rtsp://admin@10.0.0.9/stream", "--camera-password-file", str(pw)]
    assert provision(good) == 0
    node_dir = out / "pole-1"
    assert (node_dir / "camera.password").read_text() == "Cam#Pass:1\n"
    assert stat.S_IMODE((node_dir / "camera.password").stat().st_mode) == 0o600
    toml = (node_dir / "node.toml").read_text()
    assert 'password_file = "/etc/camnode/camera.password"' in toml and "Cam#Pass" not in toml
    assert provision(["check", str(node_dir)]) == 0
    capsys.readouterr()
    assert provision(good) == 0 and "nothing changed" in capsys.readouterr().out
    # a re-run without the file keeps the one there (and the config naming it)
    assert provision(good[:-2]) == 0 and "nothing changed" in capsys.readouterr().out
    pw.write_text("New-Pass-2\n")
    assert provision(good) == 3 and "camera password differs" in capsys.readouterr().err
    assert provision([*good, "--update"]) == 0
    assert (node_dir / "camera.password").read_text() == "New-Pass-2\n"
    (node_dir / "camera.password").chmod(0o644)
    assert provision(["check", str(node_dir)]) == 2 and "readable by others" in capsys.readouterr().err
    # the pole gets a CSI camera instead: the password goes, and the node's own checks pass
    assert provision([*base, "--source", "picamera2", "--update"]) == 0
    assert not (node_dir / "camera.password").exists() and "password_file" not in \
        (node_dir / "node.toml").read_text().split("[camera]")[1].split("[")[0]
    assert provision(["check", str(node_dir)]) == 0
