"""An IP camera's password never leaves the node in clear (issue 8, item 21): not in the log,
the systemd status, the heartbeat, the `diag` reply, an error, or `config check`."""

from __future__ import annotations

import io
import logging
import threading

from hw.redact import redact_obj, redact_text
from node.app import Node
from node.cli import main
from node.config import config_from_dict
from node.localbroker import free_port
from node.logs import LogfmtFormatter
from node.sdnotify import Notifier
from station.command import request
from station.connect import Connection

SECRET = "S3cr3t-pw"


def test_redaction_table():
    assert redact_text(f"rtsp://admin:{SECRET}@10.0.0.5:554/s") == "rtsp://admin:***@10.0.0.5:554/s"
    assert redact_text(f"open 'rtsps://u:{SECRET}@cam/a' failed; http://x/y") == \
        "open 'rtsps://u:***@cam/a' failed; http://x/y"
    assert redact_text("rtsp://cam.local/stream") == "rtsp://cam.local/stream"
    assert redact_text(f"rtsp://u:p@{SECRET}@h/x") == "rtsp://u:***@h/x"  # '@' in the password
    assert redact_obj({"mqtt": {"password": "pw", "password_file": "/etc/x"}, "l": [f"a://b:{SECRET}@c"]}) \
        == {"mqtt": {"password": "***", "password_file": "/etc/x"}, "l": ["a://b:***@c"]}


def test_camera_password_masked_everywhere(tmp_path, broker, subscriber_factory, capsys, monkeypatch):
    dead = free_port()  # an IP camera that does not answer: its errors quote the URL
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{dead}/stream"
    cfg = config_from_dict({
        "node": {"id": "pole-9"}, "camera": {"source": url, "width": 320, "height": 240},
        "storage": {"path": str(tmp_path / "rec")}, "detect": {"enabled": False},
        "mqtt": {"port": broker.port, "heartbeat_s": 0.3, "password": "mqtt-pw"}})
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(LogfmtFormatter(journal=False))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    notify = tmp_path / "notify"
    import socket

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(notify))
    srv.settimeout(0.5)
    to_systemd: list[bytes] = []

    def systemd() -> None:  # reads what the node tells systemd, as systemd would
        while srv.fileno() >= 0:
            try:
                to_systemd.append(srv.recv(4096))
            except OSError:
                if srv.fileno() < 0:
                    return

    threading.Thread(target=systemd, name="fake-systemd", daemon=True).start()
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-9/#")
    node = Node(cfg, notifier=Notifier({"NOTIFY_SOCKET": str(notify)}))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,), name="node-under-test")
    th.start()
    try:
        assert node.link.wait_connected(10) and node.link.subscribed.wait(10)
        assert live.wait_for(lambda s: any("camera" in h["faults"] for h in s.json("heartbeat")), 30)
        reply = request(Connection(broker.host, broker.port), "pole-9", "diag", timeout_s=10)
        assert reply["ok"], reply
        assert reply["result"]["config"]["camera"]["source"] == f"rtsp://admin:***@127.0.0.1:{dead}/stream"
        assert reply["result"]["config"]["mqtt"]["password"] == "***"
    finally:
        stop.set()
        th.join(30)
        root.removeHandler(handler)
        root.setLevel(old_level)
        srv.close()
    assert any(b"READY=1" in m and b"admin:***@" in m for m in to_systemd)
    mqtt_text = "\n".join(p.decode(errors="replace") for _, p, _ in live.messages)
    log_text = out.getvalue()
    assert "admin:***@" in log_text  # the URL was logged, masked
    for where, text in [("mqtt", mqtt_text), ("log", log_text), ("systemd", b"\n".join(to_systemd).decode())]:
        assert SECRET not in text, f"camera password in clear in the {where}"
    cfg_file = tmp_path / "node.toml"
    cfg_file.write_text(f'[camera]\nsource = "{url}"\n[detect]\nenabled = false\n'
                        f'[storage]\npath = "{tmp_path / "rec"}"\n')
    assert main(["config", "check", str(cfg_file)]) == 0
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err and "admin:***@" in printed.out
