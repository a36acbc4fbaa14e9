"""Bad input on every topic ``serve`` subscribes to, through real mosquitto into the real
service: refused and counted, logged once per kind, never a crash, never a corrupt archive."""

from __future__ import annotations

import json
import re
import socket

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.stationproc import ServeProcess, events_cli, wait_until


def good_event(eid: str, phase: str = "start", **extra) -> bytes:
    return json.dumps({"id": eid, "kind": "object", "phase": phase, "label": "car", "start":
                       "2026-11-22T18:00:00.000Z", "end": None, **extra}).encode()


def publisher(port: int) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_bad_input_on_every_topic_is_refused_counted_logged_once(archive_url, broker, tmp_path):
    sock_path = tmp_path / "notify"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(20)
    serve = ServeProcess(broker.port, archive_url, tmp_path / "serve.log",
                         env={"NOTIFY_SOCKET": str(sock_path)})
    pub = publisher(broker.port)
    try:
        assert srv.recv(512).decode().startswith("READY=1")  # systemd Type=notify
        assert serve.wait_log("subscribed (QoS 1)"), serve.log()
        bad: list[tuple[str, bytes]] = []
        for leaf in ("status", "heartbeat", "event", "reply/diag", "clip/r1/done"):
            topic = f"camnode/pole-1/{leaf}"
            bad += [(topic, b"{not json"), (topic, b"\xff\xfe\x00"), (topic, b"[]"),
                    (topic, b"{" + b" " * 200_000 + b"}")]
        bad += [("camnode/pole-1/snapshot/e9", b"not a jpeg"),
                ("camnode/pole-1/snapshot/e9", b"\xff\xd8" + b"\0" * (5 << 20)),
                ("camnode/pole-1/event", json.dumps({"id": "e1", "phase": "start"}).encode()),
                ("camnode/pole-1/status", json.dumps({"state": "?", "utc": "2026-11-22T18:00:00Z"}).encode()),
                # a node publishing under another node's id
                ("camnode/pole-1/heartbeat", json.dumps({"node_id": "pole-2", "utc": "2026-11-22T18:00:00Z"}
                                                        ).encode())]
        good = [("camnode/pole-1/event", good_event("e1", colour_of_the_future="mauve")),  # unknown field
                ("camnode/pole-1/event", good_event("e1")),  # duplicate id + phase
                ("camnode/pole-2/event", good_event("e1", "end")),  # pole-2 claims pole-1's event
                ("camnode/pole-1/snapshot/nobody", b"\xff\xd8\xff\xe0 jpeg"),  # snapshot, unknown event
                ("camnode/pole-1/event", good_event("e2"))]
        infos = [pub.publish(t, p, qos=1) for t, p in bad + good]
        for info in infos:
            info.wait_for_publish(10)
        assert wait_until(lambda: {r["id"] for r in events_cli(archive_url)} == {"e1", "e2"}, 30), serve.log()
        assert serve.proc.poll() is None  # never a crash
    finally:
        pub.disconnect()
        pub.loop_stop()
        srv.close()
        code = serve.stop()
    assert code == 0
    log = serve.log()
    (final,) = re.findall(r"stopped: (.*)", log)
    refused = json.loads(re.search(r"refused (\{.*?\})", final).group(1).replace("'", '"'))
    assert refused == {"malformed": 16, "oversized": 6, "bad_field": 2, "foreign_id": 2,
                       "orphan_snapshot": 1}
    assert re.search(r"duplicates 1\b", final)
    # logged once per kind and node, not once per message
    lines = [x for x in log.splitlines() if "refused message on" in x]
    assert len(lines) == len({(m.group(1), m.group(2)) for m in
                              (re.search(r"on camnode/([^/]+)/\S+ \((\w+)", x) for x in lines)})
    rows = {r["id"]: r for r in events_cli(archive_url)}
    assert rows["e1"]["node"] == "pole-1" and rows["e1"]["phase"] == "start"


def test_serve_refuses_bad_settings_with_one_line(tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True, text=True,
                              timeout=60)

    r = run("serve", "--db", "mysql://x@y/z")
    assert r.returncode == 1 and "unsupported database 'mysql'" in r.stderr
    r = run("serve", "--db", "postgresql://postgres@127.0.0.1:5432/no_such_db_here")
    assert r.returncode == 1 and 'database "no_such_db_here" does not exist' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "s.toml").write_text("[broker]\nport = 'x'\n")
    r = run("serve", "--config", str(tmp_path / "s.toml"))
    assert r.returncode == 1 and "broker.port must be int" in r.stderr
    r = run("serve", "--password-file", str(tmp_path / "missing"), "--db", f"sqlite:///{tmp_path}/a.db")
    assert r.returncode == 1 and "--password-file" in r.stderr and "No such file" in r.stderr
    r = run("events", "--db", f"sqlite:///{tmp_path}/none.db", "--json")
    assert r.returncode == 1 and "no archive at" in r.stderr
    r = run("events", "--db", f"sqlite:///{tmp_path}/a.db", "--since", "last tuesday")
    assert r.returncode == 2 and "--since" in r.stderr


def test_an_edited_inventory_cannot_swap_a_poles_trusted_key(tmp_path, capsys):
    """``camnode-station inventory import``: a signing key that differs from the one the archive
    trusts is refused (exit 1, one line naming the pole and the way to accept it), nothing is
    written; ``--replace-key POLE`` accepts it, and says so in the log."""
    from station.cli import main as station

    db = f"sqlite:///{tmp_path / 'archive.db'}"
    head = "node_id,name,broker,signing_public_key,provisioned_utc\n"
    first, second = "ab" * 32, "cd" * 32
    (tmp_path / "inv.csv").write_text(head + f"pole-1,Pole 1,b:8883,{first},2026-11-01T00:00:00Z\n")
    assert station(["inventory", "--db", db, "import", str(tmp_path / "inv.csv")]) == 0
    (tmp_path / "edited.csv").write_text(head + f"pole-1,Cột 1,b:8883,{second},2026-11-30T00:00:00Z\n")
    capsys.readouterr()
    assert station(["inventory", "--db", db, "import", str(tmp_path / "edited.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert "pole-1: its signing key differs" in err and "--replace-key pole-1" in err and "\n" not in err
    assert station(["inventory", "--db", db, "list", "--json"]) == 0
    (row,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert row["pubkey"] == first and row["pole"] != "Cột 1"
    assert station(["inventory", "--db", db, "import", str(tmp_path / "edited.csv"),
                    "--replace-key", "pole-1"]) == 0
    assert station(["inventory", "--db", db, "set", "pole-1", "--pubkey", first]) == 1
    assert station(["inventory", "--db", db, "set", "pole-1", "--pubkey", first, "--replace-key"]) == 0
