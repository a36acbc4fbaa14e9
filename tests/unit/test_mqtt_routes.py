"""The routing table of a shared session (station/mqtt_routes.py), as a table of cases: who
gets a message delivered for which subscription identifiers."""

from __future__ import annotations

import pytest

from station.mqtt_routes import BASE_ID, Listener, Routes, matches


def _noop(msg) -> None:
    pass


@pytest.fixture
def routes():
    r = Routes([("camnode/+/status", 1), ("camnode/+/heartbeat", 0)])
    reply = Listener(("camnode/p1/reply/clip", "camnode/p1/clip/#"), _noop)
    _grants, reply_id, new = r.add(reply, [("camnode/p1/reply/clip", 1), ("camnode/p1/clip/#", 1)])
    assert new == [("camnode/p1/reply/clip", 1), ("camnode/p1/clip/#", 1)] and reply_id != BASE_ID
    r.answer([f for f, _ in new], [None, None])
    status = Listener(("camnode/p1/status", "camnode/p1/clip/#"), _noop)
    _, status_id, new = r.add(status, [("camnode/p1/status", 1), ("camnode/p1/clip/#", 1)])
    assert new == [("camnode/p1/status", 1)]  # clip/# is held already: not subscribed twice
    r.answer(["camnode/p1/status"], [None])
    return r, reply, reply_id, status, status_id


@pytest.mark.parametrize(("topic", "ids", "parts", "base"), [
    ("camnode/p1/status", ["base"], [], True),           # the program's own copy
    ("camnode/p1/status", ["status"], ["status"], False),  # the part's copy of the same message
    ("camnode/p1/status", ["base", "status"], ["status"], True),  # one copy for both
    ("camnode/p1/status", None, ["status"], True),       # a broker that names none: by filter
    ("camnode/p1/clip/r1/0", ["reply"], ["reply", "status"], False),  # a filter two parts hold
    ("camnode/p1/reply/clip", ["reply"], ["reply"], False),
    ("camnode/p2/heartbeat", ["base"], [], True),
    ("camnode/p2/reply/clip", ["reply"], [], False),     # no filter of that id matches: nobody
])
def test_who_gets_a_message(routes, topic, ids, parts, base):
    r, reply, reply_id, status, status_id = routes
    by = {"base": BASE_ID, "reply": reply_id, "status": status_id}
    got, to_base = r.targets(topic, None if ids is None else [by[i] for i in ids])
    names = {id(reply): "reply", id(status): "status"}
    assert sorted(names[id(x)] for x in got) == sorted(parts) and to_base == base


def test_filters_are_counted_and_a_refusal_is_tried_again(routes):
    r, reply, reply_id, status, status_id = routes
    assert r.plan() == {BASE_ID: [("camnode/+/status", 1), ("camnode/+/heartbeat", 0)],
                        reply_id: [("camnode/p1/reply/clip", 1), ("camnode/p1/clip/#", 1)],
                        status_id: [("camnode/p1/status", 1)]}
    assert r.remove(reply) == ["camnode/p1/reply/clip"]  # clip/# is still the other part's
    assert r.remove(status) == ["camnode/p1/status", "camnode/p1/clip/#"]
    assert r.held() == [] and list(r.plan()) == [BASE_ID]
    # a refused filter is not sent again on a reconnection, and the next part asks again
    late = Listener(("camnode/p1/cmd/x",), _noop)
    grants, _sub_id, new = r.add(late, [("camnode/p1/cmd/x", 1)])
    r.answer(["camnode/p1/cmd/x"], ["refused"])
    assert grants[0].error == "refused" and grants[0].answered.is_set() and list(r.plan()) == [BASE_ID]
    again = Listener(("camnode/p1/cmd/x",), _noop)
    _, _, new = r.add(again, [("camnode/p1/cmd/x", 1)])
    assert new == [("camnode/p1/cmd/x", 1)]
    # a part listening to one of the program's own filters adds no subscription and takes none away
    own = Listener(("camnode/+/status",), _noop)
    _, _, new = r.add(own, [("camnode/+/status", 1)])
    assert new == [] and r.remove(own) == [] and BASE_ID in r.plan()


@pytest.mark.parametrize(("sub", "topic", "hit"), [
    ("camnode/+/status", "camnode/p1/status", True),
    ("$share/archive/camnode/+/event", "camnode/p1/event", True),
    ("camnode/p1/clip/#", "camnode/p1/clip/r/3", True),
    ("camnode/p1/clip/#", "camnode/p2/clip/r/3", False),
])
def test_matches(sub, topic, hit):
    assert matches(sub, topic) is hit
