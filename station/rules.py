"""Rules and forwarding: "a person on pole-3 or pole-4 between 22:00 and 06:00 → this webhook".

A rule names classes (empty: any), poles (empty: any), local hours ("22:00-06:00", may wrap
midnight; empty: always, in the rule's time zone) and one action:

* ``webhook`` — POST ``{"rule": name, "event": {...}}`` as JSON to a URL (a post wires its own
  SMS or messaging gateway there); 3 attempts, 5 s timeout each;
* ``command`` — publish ``cmd/<name>`` with the rule's arguments to a node (``*`` = the event's
  own pole), e.g. ``hold`` or ``ir``; the command is audited with actor ``rule:<name>`` and the
  node's reply completes that audit row.

The service evaluates the rules on every event archived for the first time, records each hit
once per (rule, event) in ``rule_hits`` (two service instances never forward twice), and a
``rules-forwarder`` thread carries the actions out and records the outcome. Rules are re-read
every ``refresh_s`` so ``camnode-station rules`` edits apply without a restart.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from station.archive.db import writing
from station.archive.schema import commands, rule_hits, rules

log = logging.getLogger(__name__)

_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    classes: tuple[str, ...]
    poles: tuple[str, ...]
    hours: str
    tz: str
    action: str
    target: str
    args: dict[str, Any]


def parse_hours(text: str) -> tuple[dtime, dtime] | None:
    if not text:
        return None
    m = _HOURS.match(text)
    if m is None:
        raise RuleError(f"hours must be HH:MM-HH:MM (e.g. 22:00-06:00), got {text!r}")
    a, b, c, d = (int(x) for x in m.groups())
    return dtime(a, b), dtime(c, d)


def matches(rule: Rule, label: str, node: str, start_utc: datetime) -> bool:
    """Does an event (class, pole, naive-UTC start) fall under ``rule``?"""
    if rule.classes and label not in rule.classes:
        return False
    if rule.poles and node not in rule.poles:
        return False
    window = parse_hours(rule.hours)
    if window is None:
        return True
    local = start_utc.replace(tzinfo=UTC).astimezone(ZoneInfo(rule.tz)).time()
    lo, hi = window
    return lo <= local < hi if lo <= hi else (local >= lo or local < hi)


def validate(name: str, action: str, target: str, hours: str, tz: str) -> None:
    if not _NAME.match(name):
        raise RuleError(f"rule name must be a short plain name, got {name!r}")
    parse_hours(hours)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"unknown time zone {tz!r}") from None
    if action == "webhook":
        if not re.match(r"^https?://[^\s/]+", target):
            raise RuleError(f"webhook target must be an http(s) URL, got {target!r}")
    elif action == "command":
        if not re.match(r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})/[a-z][a-z_]{0,31}$", target):
            raise RuleError(f"command target must be NODE/COMMAND or */COMMAND, got {target!r}")
    else:
        raise RuleError(f"action must be webhook or command, got {action!r}")


def add_rule(engine: Engine, *, name: str, action: str, target: str, classes: list[str] | None = None,
             poles: list[str] | None = None, hours: str = "", tz: str = "UTC",
             args: dict[str, Any] | None = None, now: datetime) -> int:
    validate(name, action, target, hours, tz)
    with writing(engine) as conn:
        try:
            res = conn.execute(insert(rules).values(
                name=name, action=action, target=target, classes=classes or [], poles=poles or [],
                hours=hours, tz=tz, args=args or {}, enabled=True, created=now))
        except IntegrityError:
            raise RuleError(f"a rule named {name!r} exists") from None
        return int(res.inserted_primary_key[0])


def load_rules(engine: Engine) -> list[Rule]:
    with engine.connect() as conn:
        rows = conn.execute(select(rules).where(rules.c.enabled.is_(True)).order_by(rules.c.id)).mappings()
        return [Rule(r["id"], r["name"], tuple(r["classes"]), tuple(r["poles"]), r["hours"], r["tz"],
                     r["action"], r["target"], dict(r["args"])) for r in rows]


def record_hits(engine: Engine, active: list[Rule], fresh: list[dict[str, Any]], now: datetime
                ) -> list[tuple[int, Rule, dict[str, Any]]]:
    """Hits of ``fresh`` events (first archived now), each recorded once; returns the new ones."""
    out = []
    for ev in fresh:
        for rule in active:
            if not matches(rule, ev["label"], ev["node"], ev["start"]):
                continue
            try:
                with writing(engine) as conn:
                    res = conn.execute(insert(rule_hits).values(rule_id=rule.id, event_id=ev["id"],
                                                                node=ev["node"], hit=now))
                    out.append((int(res.inserted_primary_key[0]), rule, ev))
            except IntegrityError:  # already hit (redelivery, or another service instance)
                continue
    return out


class Forwarder:
    """Carries out rule hits on its own thread (``rules-forwarder``)."""

    def __init__(self, engine: Engine, publish: Callable[[str, str, dict[str, Any]], None], clock, *,
                 refresh_s: float = 30.0, timeout_s: float = 5.0, attempts: int = 3) -> None:
        self.engine, self.publish, self.clock = engine, publish, clock
        self.refresh_s, self.timeout_s, self.attempts = refresh_s, timeout_s, attempts
        self._rules: list[Rule] = []
        self._loaded = float("-inf")
        self._queue: queue.Queue[tuple[int, Rule, dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rules-forwarder", daemon=True)
        self.forwarded = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)

    def active(self) -> list[Rule]:
        if time.monotonic() - self._loaded >= self.refresh_s:
            try:
                self._rules = load_rules(self.engine)
            except Exception as exc:  # the archive is busy or away: keep the rules we have
                log.warning("rules not reloaded: %s", exc)
            self._loaded = time.monotonic()
        return self._rules

    def events_archived(self, fresh: list[dict[str, Any]]) -> None:
        """Evaluate the rules on events archived for the first time (writer thread)."""
        if not fresh or not self.active():
            return
        now = self.clock.utc().replace(tzinfo=None)
        for hit in record_hits(self.engine, self._rules, fresh, now):
            self._queue.put(hit)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            hit_id, rule, ev = item
            try:
                if rule.action == "webhook":
                    outcome = self._webhook(rule, ev)
                else:
                    outcome = self._command(hit_id, rule, ev)
            except Exception as exc:  # never let one action stop the others
                outcome = f"error: {exc}"
                log.exception("rule %s failed", rule.name)
            self.forwarded += 1
            try:
                with writing(self.engine) as conn:
                    conn.execute(update(rule_hits).where(rule_hits.c.id == hit_id).values(
                        outcome=outcome[:256], done=self.clock.utc().replace(tzinfo=None)))
            except Exception as exc:
                log.error("rule hit %d outcome not recorded: %s", hit_id, exc)

    def _webhook(self, rule: Rule, ev: dict[str, Any]) -> str:
        body = json.dumps({"rule": rule.name, "event": {**ev, "start": ev["start"].isoformat() + "Z"}},
                          default=str).encode()
        last = ""
        for attempt in range(self.attempts):
            req = urllib.request.Request(rule.target, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return f"ok: HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
            time.sleep(min(4.0, 0.5 * 2 ** attempt))
        log.warning("rule %s: webhook failed after %d attempts: %s", rule.name, self.attempts, last)
        return f"error: {last}"

    def _command(self, hit_id: int, rule: Rule, ev: dict[str, Any]) -> str:
        node, name = rule.target.split("/", 1)
        node = ev["node"] if node == "*" else node
        request = f"rule-{hit_id}"
        args = {**rule.args, "id": request}
        with writing(self.engine) as conn:
            conn.execute(insert(commands).values(request=request, node=node, command=name,
                                                 actor=f"rule:{rule.name}", args=args,
                                                 sent=self.clock.utc().replace(tzinfo=None)))
        self.publish(node, name, args)
        return f"ok: cmd/{name} sent to {node}"
