"""Which part of a program gets which message of its one broker session.

A program's session (:class:`station.mqtt_session.Session`) has its own subscriptions (the
console's live feed: every node's status, heartbeats, events) and, for a while, those of its
parts (a command waiting for its reply, a clip pull for its chunks). Each ``listen`` that adds
topic filters subscribes them under an MQTT 5 *subscription identifier* of its own (the
session's own subscriptions under :data:`BASE_ID`), and the broker names in every message the
identifiers of the subscriptions it is delivered for — so that when two subscriptions overlap
(a part's ``camnode/pole-7/status`` and the feed's ``camnode/+/status``), and the broker sends
the message once for each, every copy goes to its own subscribers only: each part and the
program's handler see each message once (a copy for a subscription no longer held goes to
nobody). A broker that takes no identifiers (its CONNACK says so) gets none, and messages are
routed by filter: overlapping subscriptions may then deliver a message twice. A filter several
parts listen to is subscribed once and counted; it is unsubscribed when the last of them leaves.

Thread: every method takes this object's lock (any thread); nothing here blocks or does I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho

Subscription = tuple[str, int]

#: the subscription identifier of the session's own subscriptions
BASE_ID = 1
#: the largest identifier MQTT 5 allows
MAX_ID = 268_435_455


@dataclass(eq=False)
class Listener:
    """One part's interest: its topic filters, its handler, and its view of connection losses."""

    filters: tuple[str, ...]
    handler: Callable[[Any], None]
    on_state: Callable[[str | None], None] | None = None


@dataclass
class Grant:
    """One topic filter: its subscription identifier, how many parts hold it, the broker's answer."""

    qos: int
    sub_id: int
    count: int = 0
    answered: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


def matches(sub: str, topic: str) -> bool:
    """Whether ``topic`` falls under the filter ``sub`` (a shared subscription's group ignored)."""
    if sub.startswith("$share/") and sub.count("/") >= 2:
        sub = sub.split("/", 2)[2]
    return paho.topic_matches_sub(sub, topic)


class Routes:
    def __init__(self, base: Iterable[Subscription]) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._base = {f for f, _ in base}
        self._grants: dict[str, Grant] = {}
        for f, qos in base:  # held for good, already answered by the session's opening
            g = self._grants[f] = Grant(qos, BASE_ID, count=1)
            g.answered.set()
        self._next_id = BASE_ID + 1

    def add(self, listener: Listener,
            subs: list[Subscription]) -> tuple[list[Grant], int, list[Subscription]]:
        """Register ``listener`` on ``subs``. Returns the grants to wait for, and the identifier
        and filters to subscribe now (those nobody holds yet, or whose last try was refused)."""
        with self._lock:
            self._listeners.append(listener)
            sub_id = self._next_id
            self._next_id = self._next_id + 1 if self._next_id < MAX_ID else BASE_ID + 1
            new: list[Subscription] = []
            for f, qos in subs:
                g = self._grants.get(f)
                if g is None or g.error is not None:
                    g = self._grants[f] = Grant(qos, sub_id, count=g.count if g else 0)
                    new.append((f, qos))
                g.count += 1
            return [self._grants[f] for f, _ in subs], sub_id, new

    def answer(self, filters: list[str], errors: list[str | None]) -> None:
        """The broker's answer to a subscription of ``filters``: each granted (None) or refused."""
        with self._lock:
            for f, error in zip(filters, errors, strict=True):
                g = self._grants.get(f)
                if g is not None and f not in self._base:
                    g.error = error
                    g.answered.set()

    def remove(self, listener: Listener) -> list[str]:
        """Take ``listener`` away; the filters nobody holds any more (to unsubscribe)."""
        gone = []
        with self._lock:
            self._listeners.remove(listener)
            for f in listener.filters:
                g = self._grants.get(f)
                if g is not None and f not in self._base:
                    g.count -= 1
                    if g.count <= 0:
                        del self._grants[f]
                        gone.append(f)
        return gone

    def targets(self, topic: str, sub_ids: list[int] | None) -> tuple[list[Listener], bool]:
        """Who gets a message on ``topic`` delivered for ``sub_ids`` (all matching filters when
        the broker named none): the parts, and whether the session's own handler does."""
        with self._lock:
            hit = {f for f, g in self._grants.items()
                   if (not sub_ids or g.sub_id in sub_ids) and matches(f, topic)}
            return [lst for lst in self._listeners if hit.intersection(lst.filters)], bool(hit & self._base)

    def listeners(self) -> list[Listener]:
        with self._lock:
            return list(self._listeners)

    def plan(self) -> dict[int, list[Subscription]]:
        """Every granted filter by subscription identifier: what a reconnected session sends."""
        with self._lock:
            out: dict[int, list[Subscription]] = {}
            for f, g in self._grants.items():
                if g.error is None:
                    out.setdefault(g.sub_id, []).append((f, g.qos))
            return out

    def held(self) -> list[str]:
        """The parts' filters currently subscribed (not the session's own)."""
        with self._lock:
            return sorted(f for f in self._grants if f not in self._base)
