"""Rules and forwarding: table of matches; through the real service and mosquitto a rule hit
reaches a real HTTP webhook and a node's command topic once, and is archived."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from sqlalchemy import select

from station.archive import open_archive
from station.archive.schema import commands, rule_hits
from station.cli import main as station_cli
from station.rules import Rule, RuleError, add_rule, matches, validate


def rule(**kw) -> Rule:
    base = {"id": 1, "name": "r", "classes": (), "poles": (), "hours": "", "tz": "UTC", "action": "webhook",
            "target": "http://x", "args": {}}
    return Rule(**{**base, **kw})


@pytest.mark.parametrize(("r", "label", "node", "utc", "hit"), [
    (rule(), "car", "p1", datetime(2026, 11, 22, 12), True),
    (rule(classes=("person",)), "car", "p1", datetime(2026, 11, 22, 12), False),
    (rule(classes=("person",), poles=("p2",)), "person", "p1", datetime(2026, 11, 22, 12), False),
    (rule(hours="22:00-06:00"), "person", "p1", datetime(2026, 11, 22, 23, 30), True),
    (rule(hours="22:00-06:00"), "person", "p1", datetime(2026, 11, 22, 5, 59), True),
    (rule(hours="22:00-06:00"), "person", "p1", datetime(2026, 11, 22, 6, 0), False),
    (rule(hours="08:00-18:00"), "person", "p1", datetime(2026, 11, 22, 7, 59), False),
    # local hours: 21:30 UTC is 22:30 in Berlin in winter
    (rule(hours="22:00-06:00", tz="Europe/Berlin"), "person", "p1", datetime(2026, 11, 22, 21, 30), True),
    (rule(hours="22:00-06:00", tz="Europe/Berlin"), "person", "p1", datetime(2026, 7, 22, 19, 30), False),
])
def test_rule_matching(r, label, node, utc, hit):
    assert matches(r, label, node, utc) is hit


@pytest.mark.parametrize(("args", "error"), [
    (("bad name!", "webhook", "http://x", "", "UTC"), "short plain name"),
    (("r", "webhook", "ftp://x", "", "UTC"), "http"),
    (("r", "command", "pole 7/ir", "", "UTC"), "NODE/COMMAND"),
    (("r", "email", "x", "", "UTC"), "webhook or command"),
    (("r", "webhook", "http://x", "25:00-01:00", "UTC"), "HH:MM"),
    (("r", "webhook", "http://x", "", "Mars/Base"), "time zone"),
])
def test_rules_refused_with_reason(args, error):
    with pytest.raises(RuleError, match=error):
        validate(*args)


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_hits_reach_webhook_and_node_once(archive_url, broker, station_factory, subscriber_factory, capsys):
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, name="webhook", daemon=True).start()
    engine = open_archive(archive_url)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/alert"
        assert station_cli(["rules", "--db", archive_url, "add", "night-person", "--class", "person",
                            "--webhook", url]) == 0
        add_rule(engine, name="hold-it", action="command", target="*/hold", classes=["motorcycle"],
                 args={"name": "rule"}, now=datetime(2026, 1, 1))
        assert station_cli(["rules", "--db", archive_url, "add", "x", "--webhook", url,
                            "--command", "*/ir"]) == 2  # one action only
        cmds = subscriber_factory(broker.host, broker.port, "camnode/+/cmd/#")
        station = station_factory(broker.port, archive_url)
        pub = subscriber_factory(broker.host, broker.port, "camnode/none")

        def ev(eid, label, phase="start"):
            return json.dumps({"id": eid, "kind": "object", "label": label, "phase": phase,
                               "start": "2026-11-22T23:00:00Z"}).encode()

        for eid, label in (("e1", "person"), ("e2", "car"), ("e3", "motorcycle")):
            pub.client.publish("camnode/pole-4/event", ev(eid, label), qos=1)
        pub.client.publish("camnode/pole-4/event", ev("e1", "person", "end"), qos=1)  # no second hit
        pub.client.publish("camnode/pole-4/event", ev("e1", "person"), qos=1)  # redelivery: none
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(Hook.received) < 1 or not cmds.messages):
            time.sleep(0.1)
        time.sleep(1.0)  # a second forward would come now
        assert [h["event"]["id"] for h in Hook.received] == ["e1"]
        assert Hook.received[0]["rule"] == "night-person" and Hook.received[0]["event"]["node"] == "pole-4"
        ((topic, payload, _),) = cmds.messages
        assert topic == "camnode/pole-4/cmd/hold" and json.loads(payload)["name"] == "rule"
        deadline = time.monotonic() + 10
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                hits = conn.execute(select(rule_hits.c.event_id, rule_hits.c.outcome)).all()
                if len(hits) == 2 and all(h.outcome for h in hits):
                    break
                time.sleep(0.1)
                conn.rollback()
            audit = conn.execute(select(commands.c.actor, commands.c.command)).all()
        assert sorted((h.event_id, h.outcome.split(":")[0]) for h in hits) == [("e1", "ok"), ("e3", "ok")]
        assert ("rule:hold-it", "hold") in audit
        assert station.forwarder.forwarded == 2
        capsys.readouterr()
        assert station_cli(["rules", "--db", archive_url, "hits"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2
    finally:
        server.shutdown()
        engine.dispose()
