"""The ``events`` fault of the action router: set while the card refuses event actions, cleared
by the first dispatch that works throughout (a card remounted writable, space freed)."""

from __future__ import annotations

import errno
import sqlite3
import types
from datetime import UTC, datetime

from node.actions import ActionRouter
from node.events import MarkSegments, PublishEvent
from node.pipeline import Faults

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Card:
    """The recorder's event flags on a card that can be made read-only."""

    def __init__(self) -> None:
        self.read_only = False
        self.marked: list[str] = []

    def mark(self, event_id, start, end, motion, person) -> int:
        if self.read_only:
            raise OSError(errno.EROFS, "Read-only file system", "journal.jsonl")
        self.marked.append(event_id)
        return 1


class Link:
    topics = types.SimpleNamespace(event="camnode/n/event")

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send_durable(self, topic, payload) -> None:
        self.sent.append(payload)


def _event(n: int) -> list:
    return [MarkSegments(f"e{n}", T, T, motion=True, person=False),
            PublishEvent({"id": f"e{n}", "phase": "end"})]


def test_the_events_fault_lasts_while_the_card_refuses_and_clears_when_it_works_again() -> None:
    card, link, faults = Card(), Link(), Faults()
    router = ActionRouter(card, link, faults)
    router.dispatch(_event(1))
    assert faults.snapshot() == {}
    card.read_only = True
    router.dispatch(_event(2))
    assert "Read-only file system" in faults.snapshot()["events"]
    assert [p["id"] for p in link.sent] == ["e1", "e2"]  # the message still goes: one failure each
    router.dispatch([])  # nothing done: proves nothing either way
    assert "events" in faults.snapshot()
    card.read_only = False
    router.dispatch(_event(3))
    assert faults.snapshot() == {}
    assert card.marked == ["e1", "e3"]


def test_a_fault_of_another_area_is_left_alone() -> None:
    card, faults = Card(), Faults()
    faults.set("camera", "no frame from the camera for 30 s")
    ActionRouter(card, Link(), faults).dispatch(_event(1))
    assert faults.snapshot() == {"camera": "no frame from the camera for 30 s"}


class OpenEvents:
    """The open-events record on a full card."""

    def track(self, payload) -> None:
        raise sqlite3.OperationalError("database or disk is full")


def test_an_event_message_goes_even_when_the_open_event_record_cannot_be_written() -> None:
    link, faults = Link(), Faults()
    ActionRouter(Card(), link, faults, open_events=OpenEvents()).dispatch(_event(1))
    assert [p["id"] for p in link.sent] == ["e1"]  # queued for the station all the same
    assert faults.snapshot()["events"] == "open-event record: database or disk is full"
