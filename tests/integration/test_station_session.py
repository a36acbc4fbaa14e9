"""One program, one broker session, several parts (station/mqtt_session.py), against a real
mosquitto: parts listen to their own topics for as long as they need them, counted per topic
filter (one part leaving does not deafen another), the program's own subscriptions keep their
messages, a loss and a reconnection reach every part, and a part that arrives while the broker
is away is told so at once."""

from __future__ import annotations

import json
import threading

import paho.mqtt.publish as publish
import pytest

from node.localbroker import LocalBroker
from station.connect import Connection, StationError
from station.mqtt_session import Session, listening
from tests.stationproc import wait_until

REPLY = "camnode/pole-1/reply/help"
STATUS = "camnode/pole-1/status"


class Heard:
    def __init__(self) -> None:
        self.topics: list[str] = []
        self.states: list[str | None] = []
        self._lock = threading.Lock()

    def __call__(self, msg) -> None:
        with self._lock:
            self.topics.append(msg.topic)

    def state(self, reason: str | None) -> None:
        self.states.append(reason)

    def count(self, topic: str) -> int:
        with self._lock:
            return self.topics.count(topic)


@pytest.fixture
def running():
    with LocalBroker() as broker:
        feed = Heard()
        session = Session(Connection(port=broker.port, timeout_s=5), [("camnode/+/status", 1)],
                          on_message=feed, on_state=feed.state, thread_name="test-shared").start()
        assert wait_until(lambda: session.connected, 10), session.down_reason
        yield broker, session, feed
        session.close()


def _send(broker, topic: str, n: int) -> None:
    publish.single(topic, json.dumps({"n": n}), qos=1, hostname="127.0.0.1", port=broker.port)


def test_parts_listening_to_one_topic_are_counted_and_the_programs_own_topics_stay(running):
    broker, session, feed = running
    a, b = Heard(), Heard()
    assert [t.name for t in threading.enumerate() if t.name == "test-shared"]  # the named thread
    with session.listen([(REPLY, 1)], a):
        with session.listen([(REPLY, 1), (STATUS, 1)], b):
            _send(broker, REPLY, 1)
            _send(broker, STATUS, 1)
            _send(broker, REPLY, 9)  # (one publisher keeps its order: everything before has come)
            assert wait_until(lambda: a.count(REPLY) == 2 and b.count(REPLY) == 2, 5), (a.topics, b.topics)
            # each once, though the broker sends the status once for each of the two subscriptions
            # it matches (the part's and the program's own): the program's handler has it too; a
            # reply is the parts' alone
            assert b.count(STATUS) == 1 and feed.count(STATUS) == 1 and feed.count(REPLY) == 0, \
                (b.topics, feed.topics)
        _send(broker, REPLY, 2)  # b left: a still hears the filter they shared
        assert wait_until(lambda: a.count(REPLY) == 3, 5) and b.count(REPLY) == 2
    assert session.routes.held() == []
    _send(broker, REPLY, 3)
    _send(broker, STATUS, 3)  # (one publisher keeps its order: the reply came first, unheard)
    assert wait_until(lambda: feed.count(STATUS) == 2, 5)
    assert a.count(REPLY) == 3 and feed.count(REPLY) == 0


def test_a_loss_reaches_every_part_and_their_topics_come_back(running):
    broker, session, feed = running
    part = Heard()
    with session.listen([(REPLY, 1)], part, part.state):
        broker.stop()
        assert wait_until(lambda: part.states and part.states[-1] is not None, 10), part.states
        assert feed.states and feed.states[-1] is not None and not session.connected
        with pytest.raises(StationError, match="not connected to the broker"), \
                listening(session, [(STATUS, 1)], Heard()):  # a newcomer is told at once
            pass
        broker.start()
        assert wait_until(lambda: session.connected and part.states[-1] is None, 20), part.states
        _send(broker, REPLY, 1)  # the part's filter was subscribed again with the program's own
        assert wait_until(lambda: part.count(REPLY) == 1, 5)


def test_a_connection_gets_a_session_of_its_own(running):
    broker, _session, _feed = running
    heard = Heard()
    with listening(Connection(port=broker.port), [(REPLY, 1)], heard) as own:
        assert isinstance(own, Session) and own is not _session
        _send(broker, REPLY, 1)
        assert wait_until(lambda: heard.count(REPLY) == 1, 5)


def test_many_commands_at_once_on_one_session_each_get_their_reply(running):
    """What the live wall and several officers do: commands to the same pole at once, on the
    console's one session — parts joining and leaving the same reply filter over and over, 160
    times from 8 threads. Every one gets its own reply, and the filters are all given back."""
    from concurrent.futures import ThreadPoolExecutor

    import paho.mqtt.client as paho_client
    from paho.mqtt.enums import CallbackAPIVersion

    from station.command import request

    broker, session, _feed = running
    pole = paho_client.Client(CallbackAPIVersion.VERSION2, client_id="pole-1", protocol=paho_client.MQTTv5)

    def answer(cl, ud, msg) -> None:  # a node's router, reduced to its reply
        name = msg.topic.rsplit("/", 1)[1]
        req = json.loads(msg.payload)
        cl.publish(f"camnode/pole-1/reply/{name}", json.dumps({"id": req["id"], "ok": True}), qos=1)

    subscribed = threading.Event()
    pole.on_message = answer
    pole.on_subscribe = lambda *a: subscribed.set()
    pole.connect("127.0.0.1", broker.port)
    pole.subscribe("camnode/pole-1/cmd/#", qos=1)
    pole.loop_start()
    try:
        assert subscribed.wait(10)  # (a command before the pole listens would go unheard)
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: request(session, "pole-1", ("help", "holds")[i % 2],
                                                      timeout_s=10), range(160)))
    finally:
        pole.loop_stop()
        pole.disconnect()
    assert len(replies) == 160 and all(r.get("ok") for r in replies)
    assert session.routes.held() == [] and session.connected
