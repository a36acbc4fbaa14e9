"""The station under the ward's real broker set-up (provisioning's mosquitto.conf, password
file and ACL): ``serve`` as its station user archives a node's event and its acknowledgement
reaches the node (the ACL lets the station write ``ack/#`` and the node read its own); a node
publishing under another node's id is refused by the broker and never archived."""

from __future__ import annotations

import json
import time

from node.clock import SystemClock
from node.link.mqtt import MqttLink
from node.link.outbox import Outbox
from node.localbroker import LocalBroker, free_port
from provisioning.broker import BrokerLayout, broker_conf, hash_password, write_passwd
from provisioning.roles import NODE, STATION, acl_text
from station.archive import EventQuery, open_archive, search_events


def event(eid: str) -> dict:
    return {"id": eid, "kind": "object", "label": "person", "phase": "start",
            "start": "2026-11-22T18:00:00.000Z"}


def test_station_user_archives_and_acks_under_the_provisioned_acl(tmp_path, archive_url, station_factory):
    port = free_port()
    d = tmp_path / "broker"
    users = {"pole-7": "pw-pole-7", "pole-8": "pw-pole-8", "station-a": "pw-station-a"}
    write_passwd(d / "passwd", {u: hash_password(u, p) for u, p in users.items()})
    (d / "acl").write_text(acl_text([("pole-7", NODE, "camnode"), ("pole-8", NODE, "camnode"),
                                     ("station-a", STATION, "")], ["camnode"]))
    conf = broker_conf(BrokerLayout(dir=d, port=port, tls=False, bind="127.0.0.1"))
    conf = conf.replace("persistence true", f"persistence true\npersistence_location {d}/")
    links = []
    with LocalBroker(port, extra_conf=conf, workdir=d) as broker:
        station_factory(broker.port, archive_url, username="station-a", password=users["station-a"],
                        client_id="station-a")
        for node in ("pole-7", "pole-8"):
            link = MqttLink(host="127.0.0.1", port=port, node_id=node, prefix="camnode", clock=SystemClock(),
                            username=node, password=users[node], outbox=Outbox(tmp_path / f"{node}.sqlite"))
            link.start()
            links.append(link)
        try:
            assert all(link.wait_connected(10) for link in links)
            seven, eight = links
            seven.send_durable(seven.topics.event, event("e-7"))
            # pole-8 pretends to be pole-7: the broker refuses (PUBACK 135), nothing archived
            eight.send_durable("camnode/pole-7/event", json.dumps(event("e-forged")).encode())
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (len(seven.outbox) or len(eight.outbox)):
                time.sleep(0.1)
            assert len(seven.outbox) == 0 and seven.health()["archive_acks"] == 1  # acked by the archive
            assert (len(eight.outbox) == 0 and "135" in (eight.last_error or "")) or \
                "Not authorized" in (eight.last_error or "")
        finally:
            for link in links:
                link.close()
    engine = open_archive(archive_url)
    try:
        assert [(e["id"], e["node"]) for e in search_events(engine, EventQuery())] == [("e-7", "pole-7")]
    finally:
        engine.dispose()
