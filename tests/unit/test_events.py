"""The event state machine as tables: rows of (time, observation) → the actions expected.

Each table is fed to :func:`node.events.step` one row at a time; the expected column lists the
action summaries (``"start motion"``, ``"end object quiet"``, ``"protect"``...) produced at that
row. No clock, no sleeping: times are the rows' own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from node.clock import UTC
from node.events import (
    EventRules,
    EventState,
    Instant,
    MarkSegments,
    Obs,
    ProtectClip,
    PublishEvent,
    Rules,
    Sighting,
    TakeSnapshot,
    flush,
    step,
)

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


def at(s: float) -> Instant:
    return Instant(s, T0 + timedelta(seconds=s))


def person(t: float, score: float = 0.7, first: float | None = None, label: str = "person",
           seq: int | None = None) -> Sighting:
    return Sighting(label, score, (0.1, 0.2, 0.3, 0.9), seq if seq is not None else int(t * 10), at(t),
                    at(first if first is not None else t))


M = Obs(motion=True, box=(0.1, 0.1, 0.2, 0.2))
Q = Obs()


def summary(actions) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, PublishEvent):
            p = a.payload
            s = f"{p['phase']} {p['kind']}"
            if p["phase"] == "end":
                s += f" {p['end_reason']}"
            out.append(s)
        elif isinstance(a, TakeSnapshot):
            out.append("snapshot")
        elif isinstance(a, ProtectClip):
            out.append("protect")
        elif isinstance(a, MarkSegments):
            out.append("mark")
    return out


def run(table, rules: EventRules):
    state = EventState()
    got = []
    for t, obs, expected in table:
        state, actions = step(state, obs, at(t), rules)
        got.append((t, summary(actions)))
        assert summary(actions) == expected, f"at t={t}: {summary(actions)} != {expected}"
    return state, got


MOTION = EventRules(motion=Rules(quiet_s=2.0, min_s=0.3, max_s=10.0, cooldown_s=0.0, protect=False))


def test_motion_blip_never_opens_an_event():
    run([
        (0.0, M, []),
        (0.1, Q, []),
        (2.5, Q, []),
        (3.0, M, []),  # a new blip: the earlier one was forgotten after the quiet period
        (3.1, Q, []),
    ], MOTION)


def test_motion_opens_after_min_s_with_its_first_time_and_ends_after_quiet():
    state, _ = run([
        (0.0, M, []),
        (0.1, M, []),
        (0.3, M, ["start motion"]),
        (1.0, Q, []),
        (2.2, Q, []),
        (2.25, M, []),  # still inside the quiet period of 2 s after 0.3 → continues
        (4.2, Q, []),
        (4.25, Q, ["end motion quiet", "mark"]),
    ], MOTION)
    assert state.motion is None


def test_motion_event_payload_times_are_first_and_last_activity():
    state = EventState()
    payloads = []
    for t, obs in [(0.0, M), (0.4, M), (1.0, M), (3.0, Q)]:
        state, actions = step(state, obs, at(t), MOTION)
        payloads += [a.payload for a in actions if isinstance(a, PublishEvent)]
    start, end = payloads
    assert start["start"] == "2026-03-01T08:00:00.000Z" and start["end"] is None
    assert end["end"] == "2026-03-01T08:00:01.000Z" and end["duration_s"] == 1.0
    assert start["id"] == end["id"] and start["kind"] == "motion" and start["score"] is None


def test_motion_max_duration_splits_a_long_event():
    run([
        (0.0, M, []),
        (0.5, M, ["start motion"]),
        (5.0, M, []),
        (9.9, M, []),
        (10.0, M, ["end motion max_duration", "mark"]),
        (10.2, M, []),
        (10.4, M, ["start motion"]),  # continues as a new event once min_s is met again
    ], MOTION)


def test_motion_cooldown_defers_the_next_event():
    rules = EventRules(motion=Rules(quiet_s=1.0, min_s=0.0, cooldown_s=3.0, protect=False))
    run([
        (0.0, M, ["start motion"]),
        (1.0, Q, ["end motion quiet", "mark"]),  # last activity 0.0 → cooldown until 3.0
        (1.5, M, []),
        (2.5, M, []),
        (3.0, M, ["start motion"]),
    ], rules)


OBJ = EventRules(
    motion=Rules(quiet_s=2.0, min_s=100.0, protect=False),  # keep motion events out of these tables
    object=Rules(quiet_s=2.5, max_s=60.0, cooldown_s=0.0, update_s=2.0, pre_roll_s=5.0, post_roll_s=5.0),
)


def test_object_event_lifecycle():
    run([
        (0.0, Q, []),
        (1.0, Obs(seen=(person(1.0, 0.6, first=0.6),)), ["start object", "snapshot", "protect"]),
        (1.5, Obs(seen=(person(1.5, 0.62),)), []),  # better by < 0.05: no update message
        (2.0, Obs(seen=(person(2.0, 0.80),)), []),  # better, but updates wait update_s after start
        (3.0, Q, ["update object"]),
        (3.5, Q, []),
        (4.4, Q, []),
        (4.5, Q, ["snapshot", "end object quiet", "mark", "protect"]),
    ], OBJ)


def test_object_event_fields_and_recorder_actions():
    state = EventState()
    acts = []
    rows = [(1.0, Obs(seen=(person(1.0, 0.6, first=0.6, seq=10),))),
            (2.0, Obs(seen=(person(2.0, 0.9, seq=20), person(2.0, 0.55, label="car", seq=20)))),
            (5.0, Q)]
    for t, obs in rows:
        state, a = step(state, obs, at(t), OBJ)
        acts += a
    start = next(a.payload for a in acts if isinstance(a, PublishEvent) and a.payload["phase"] == "start")
    end = next(a.payload for a in acts if isinstance(a, PublishEvent) and a.payload["phase"] == "end")
    assert start["start"] == "2026-03-01T08:00:00.600Z"  # the first sighting, not the confirmation
    assert start["classes"] == ["person"] and start["score"] == 0.6 and start["snapshot"] is True
    assert end["classes"] == ["person", "car"] and end["score"] == 0.9 and end["label"] == "person"
    assert end["end"] == "2026-03-01T08:00:02.000Z" and end["duration_s"] == 1.4
    snaps = [a for a in acts if isinstance(a, TakeSnapshot)]
    assert [s.seq for s in snaps] == [10, 20]  # at the start, then the better one at the end
    protects = [a for a in acts if isinstance(a, ProtectClip)]
    assert protects[0].start_utc == T0 + timedelta(seconds=0.6 - 5.0)
    assert protects[0].end_utc is None  # open-ended until the event ends
    assert protects[-1].start_utc == protects[0].start_utc
    assert protects[-1].end_utc == T0 + timedelta(seconds=2.0 + 5.0)
    (mark,) = [a for a in acts if isinstance(a, MarkSegments)]
    assert mark.person and mark.motion and mark.start_utc == T0 + timedelta(seconds=0.6)


def test_vehicle_only_event_is_not_marked_person():
    state = EventState()
    acts = []
    for t, obs in [(0.0, Obs(seen=(person(0.0, label="car"),))), (3.0, Q)]:
        state, a = step(state, obs, at(t), OBJ)
        acts += a
    (mark,) = [a for a in acts if isinstance(a, MarkSegments)]
    assert not mark.person


def test_held_object_stays_in_its_event_without_sightings():
    run([
        (0.0, Obs(seen=(person(0.0),)), ["start object", "snapshot", "protect"]),
        (2.0, Obs(held=True), []),
        (4.0, Obs(held=True), []),
        (6.0, Obs(held=True), []),
        (8.0, Q, []),
        (8.4, Q, []),
        (8.5, Q, ["end object quiet", "mark", "protect"]),
    ], OBJ)


@pytest.mark.parametrize("gap, events", [(2.4, 1), (2.6, 2), (4.0, 2)])
def test_quiet_period_decides_merge_or_split(gap, events):
    state = EventState()
    starts = 0
    t = 0.0
    for _ in range(5):  # first visit: sightings every 0.5 s
        state, a = step(state, Obs(seen=(person(t),)), at(t), OBJ)
        starts += sum(1 for x in a if isinstance(x, PublishEvent) and x.payload["phase"] == "start")
        t += 0.5
    t -= 0.5
    for k in range(1, int(gap * 10)):  # frames at 10 fps with nothing seen
        state, a = step(state, Q, at(t + k / 10), OBJ)
    t += gap
    state, a = step(state, Obs(seen=(person(t),)), at(t), OBJ)
    starts += sum(1 for x in a if isinstance(x, PublishEvent) and x.payload["phase"] == "start")
    assert starts == events


def test_object_max_duration_closes_and_reopens():
    rules = EventRules(motion=OBJ.motion, object=Rules(quiet_s=2.0, max_s=3.0))
    run([
        (0.0, Obs(seen=(person(0.0),)), ["start object", "snapshot", "protect"]),
        (1.5, Obs(seen=(person(1.5),)), []),
        (3.0, Obs(seen=(person(3.0),)), ["end object max_duration", "mark", "protect"]),
        (3.5, Obs(seen=(person(3.5, first=0.0),)), ["start object", "snapshot", "protect"]),
    ], rules)


def test_object_cooldown_holds_back_a_new_event_then_opens_it():
    rules = EventRules(motion=OBJ.motion, object=Rules(quiet_s=1.0, cooldown_s=4.0))
    state, _ = run([
        (0.0, Obs(seen=(person(0.0),)), ["start object", "snapshot", "protect"]),
        (1.0, Q, ["end object quiet", "mark", "protect"]),
        (2.0, Obs(seen=(person(2.0),)), []),
        (3.0, Obs(seen=(person(3.0),)), []),
        (4.0, Obs(seen=(person(4.0),)), ["start object", "snapshot", "protect"]),
    ], rules)
    assert state.object is not None and state.object.start.mono == 4.0  # first sighting was in cooldown


def test_flush_ends_open_events_and_ids_are_unique():
    rules = EventRules(motion=Rules(quiet_s=2.0, min_s=0.0, protect=False), object=OBJ.object)
    state = EventState()
    state, a1 = step(state, Obs(motion=True, box=(0, 0, 1, 1), seen=(person(0.0),)), at(0.0), rules)
    state, a2 = flush(state, at(1.0), rules)
    ends = [a.payload for a in a2 if isinstance(a, PublishEvent)]
    assert {p["end_reason"] for p in ends} == {"shutdown"} and len(ends) == 2
    ids = {a.payload["id"] for a in a1 if isinstance(a, PublishEvent)}
    assert len(ids) == 2 and state.motion is None and state.object is None


def test_step_is_pure():
    state = EventState()
    obs = Obs(seen=(person(0.0),))
    s1, a1 = step(state, obs, at(0.0), OBJ)
    s2, a2 = step(state, obs, at(0.0), OBJ)
    assert s1 == s2 and a1 == a2 and state == EventState()


def test_an_interrupted_object_event_is_closed_from_its_last_message(tmp_path):
    """Issue 8/23: the record of open events survives a restart and closes each event once,
    at its last recorded activity, ending the open-ended footage protection."""
    from datetime import UTC, datetime

    from node.events import (
        EventRules,
        MarkSegments,
        ProtectClip,
        PublishEvent,
        Rules,
        close_interrupted,
    )
    from node.open_events import OpenEvents

    rec = OpenEvents(tmp_path / "open.sqlite")
    start = {"id": "E-o1", "kind": "object", "phase": "start", "classes": ["person"],
             "start": "2026-11-22T18:11:40.801Z", "end": None, "duration_s": 0.0}
    rec.track(start)
    rec.track({**start, "phase": "update", "duration_s": 12.5})
    rec.track({"id": "E-m2", "kind": "motion", "phase": "start", "classes": ["motion"],
               "start": "2026-11-22T18:11:41.000Z", "end": None, "duration_s": 0.0})
    rec.track({"id": "E-m2", "phase": "end"})
    rec.close()  # the power cut
    left = OpenEvents(tmp_path / "open.sqlite").left_open()
    assert [p["id"] for p in left] == ["E-o1"] and left[0]["duration_s"] == 12.5
    acts = close_interrupted(left[0], EventRules(object=Rules(pre_roll_s=5, post_roll_s=5)))
    end = next(a.payload for a in acts if isinstance(a, PublishEvent))
    assert end["phase"] == "end" and end["end_reason"] == "interrupted"
    assert end["end"] == "2026-11-22T18:11:53.301Z" and end["duration_s"] == 12.5
    t0 = datetime(2026, 11, 22, 18, 11, 40, 801000, tzinfo=UTC)
    protect = next(a for a in acts if isinstance(a, ProtectClip))
    assert protect.end_utc is not None  # the open-ended protection gets its end
    assert (protect.end_utc - t0).total_seconds() == 17.5 and (t0 - protect.start_utc).total_seconds() == 5
    mark = next(a for a in acts if isinstance(a, MarkSegments))
    assert mark.person and (mark.end_utc - t0).total_seconds() == 12.5


def test_an_event_is_recorded_open_before_its_start_leaves_and_until_its_end_is_queued(tmp_path):
    """Issue 15 (power cuts): the record of open events must hold an event whenever the outbox
    could have sent its start and not yet holds its end; otherwise a cut leaves the archive with
    an event that never ends (the start out, the record lost) or one that is ended twice."""
    import json
    from types import SimpleNamespace

    from node.actions import ActionRouter
    from node.link.outbox import Outbox
    from node.open_events import OpenEvents

    opened = OpenEvents(tmp_path / "events-open.sqlite")
    box = Outbox(tmp_path / "outbox.sqlite")
    seen: list[tuple[str, list[str]]] = []

    class Link:  # the durable half of the MQTT link: queue into the outbox
        topics = SimpleNamespace(event="camnode/n/event")

        def send_durable(self, topic: str, payload: dict) -> None:
            seen.append((payload["phase"], [p["id"] for p in opened.left_open()]))
            box.put(topic, json.dumps(payload).encode())

    faults: dict[str, str] = {}
    router = ActionRouter(recorder=None, link=Link(), open_events=opened, faults=SimpleNamespace(
        set=lambda k, v: faults.pop(k, None) if v is None else faults.__setitem__(k, v)))
    start = {"id": "E-m1", "kind": "motion", "phase": "start", "start": "2026-11-22T18:11:40.801Z"}
    router.dispatch([PublishEvent(start)])
    router.dispatch([PublishEvent({**start, "phase": "end", "end_reason": "quiet"})])
    assert seen == [("start", ["E-m1"]), ("end", ["E-m1"])]
    assert opened.left_open() == [] and len(box) == 2 and faults == {}


def test_event_ids_name_their_node_so_two_poles_never_share_one():
    """A ward-wide power cut: every pole starts again at the same moment, counting from 1. The
    same person seen by two poles at the same millisecond gives two ids (the archive keeps one
    event per id and refused the second pole's as another node's)."""
    obs = Obs(seen=(person(0.0),))
    ids = []
    for node in ("pole-3", "pole-4"):
        _, actions = step(EventState(node_id=node), obs, at(0.0), OBJ)
        (start,) = [a.payload for a in actions if isinstance(a, PublishEvent)]
        ids.append(start["id"])
    assert ids[0] != ids[1] and ids[0].startswith("pole-3-") and ids[1].startswith("pole-4-"), ids
    assert ids[0].removeprefix("pole-3-") == ids[1].removeprefix("pole-4-")  # the rest: time and count
    from station.archive.ingest import _ID

    assert all(_ID.match(i) for i in ids)  # and the archive takes them
    longest = "p" * 63 + "-" + ids[0].removeprefix("pole-3-")[:-1] + "9" * 9  # a 63-letter id, 10^9 events
    assert _ID.match(longest), len(longest)
