"""How soon a node uses a link that came back (issue 15: heartbeats at the station within 30 s of
a 4G link's return, whatever the outage's length). The backoff grows to its ceiling during a long
outage; each attempt into a link that drops packets waits for its connect timeout. The VM test
``tests/system/test_vm_link.py`` measures the whole path; this pins the two numbers it rests on."""

from __future__ import annotations

from node.clock import SystemClock
from node.config import config_from_dict
from node.link.mqtt import MqttLink


def test_the_default_retry_cycle_leaves_room_for_the_handshakes_and_one_heartbeat() -> None:
    cfg = config_from_dict({})
    link = MqttLink.from_config(cfg.mqtt, "pole-7", SystemClock())
    client = link._client
    cycle = client._reconnect_max_delay + client.connect_timeout
    # worst case: the link returns just after an attempt was sent into the void: this cycle, then
    # TCP + TLS + MQTT CONNECT (~5 round trips of 80-300 ms on 4G) and the next heartbeat
    assert cycle <= 20.0, cycle
