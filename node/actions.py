"""Where event actions go: footage protection and segment flags to the recorder, event
messages and snapshots to the link's durable outbox.

The vision side (:mod:`node.vision.analyzer`, over the pure machine of :mod:`node.events`)
decides *what* should happen; :class:`ActionRouter` makes it happen, recorder actions first
(footage protection must not depend on the network or the outbox), each action guarded on its
own: a failure becomes the ``events`` fault and never stops the others; the next dispatch that
works throughout clears it.

Thread: the analysis thread (and the stopping thread, for the final actions of open events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from node.events import Action, MarkSegments, ProtectClip, PublishEvent, PublishSnapshot

log = logging.getLogger(__name__)


class ActionRouter:
    """``recorder``: ``protect``/``mark``; ``link``: ``send_durable`` and ``topics``;
    ``faults``: where a failed action is reported."""

    def __init__(self, recorder: Any, link: Any, faults: Any, open_events: Any = None,
                 on_protect: Callable[[str, bool], None] | None = None) -> None:
        """``open_events``: where event messages are recorded so that events a power cut left
        open are closed at the next start (:mod:`node.open_events`); None: not recorded.
        ``on_protect(event_id, open)``: told when an event clip opens or closes (the storage
        budget's event tier)."""
        self._recorder, self._link, self._faults = recorder, link, faults
        self._open_events = open_events
        self._on_protect = on_protect

    def dispatch(self, actions: list[Action]) -> None:
        """Carry out ``actions``: recorder ones first, then messages; each guarded on its own."""
        topics = self._link.topics
        ordered = sorted(actions, key=lambda a: not isinstance(a, ProtectClip | MarkSegments))
        failed = False
        for act in ordered:
            try:
                if isinstance(act, ProtectClip):
                    self._recorder.protect(act.event_id, act.start_utc, act.end_utc)
                    if self._on_protect is not None:
                        self._on_protect(act.event_id, act.end_utc is None)
                elif isinstance(act, MarkSegments):
                    self._recorder.mark(act.event_id, act.start_utc, act.end_utc, act.motion, act.person)
                elif isinstance(act, PublishEvent):
                    ending = act.payload.get("phase") == "end"
                    if self._open_events is not None and not ending:  # first: a cut after it closes it
                        failed |= not self._track(act.payload)
                    self._link.send_durable(topics.event, act.payload)
                    if self._open_events is not None and ending:  # last: its end is queued now
                        failed |= not self._track(act.payload)
                elif isinstance(act, PublishSnapshot):
                    self._link.send_durable(topics.snapshot(act.event_id), act.jpeg)
            except Exception as exc:
                failed = True
                log.exception("event action %s failed", type(act).__name__)
                self._faults.set("events", f"{type(act).__name__}: {exc}")
        if ordered and not failed and self._faults is not None:
            # they work again (a card writable again): the fault is over
            self._faults.set("events", None)

    def _track(self, payload: dict[str, Any]) -> bool:
        """Record an event message for the next start (events a cut leaves open); a card that
        refuses it (full, read-only) is the ``events`` fault, and the message is sent anyway."""
        try:
            self._open_events.track(payload)
            return True
        except Exception as exc:
            log.exception("open-event record failed")
            self._faults.set("events", f"open-event record: {exc}")
            return False
