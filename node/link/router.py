"""Commands from the station and the technician: ``<p>/<id>/cmd/<name>`` → ``reply/<name>``.

Each command is a JSON object (may be empty); an optional ``"id"`` is echoed in the reply so
a console can match answers to questions. A reply is always sent, also for what is wrong:

    {"ok": true,  "command": "ir", "id": "42", "utc": "...", "result": {...}}
    {"ok": false, "command": "ir", "id": "42", "utc": "...", "error": "mode must be ..."}

Malformed JSON, an oversized payload (> ``MAX_COMMAND_BYTES``), an unknown command or a bad
argument get ``ok: false`` with the reason and change nothing. Handlers run on the MQTT network
thread, so each must be quick (no I/O heavier than reading a few files).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.link import topics as t

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class CommandError(ValueError):
    """A command's arguments are wrong; the message goes back to the sender."""


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    help: str


class CommandRouter:
    def __init__(self, publish: Callable[[str, dict[str, Any]], Any], topics: t.Topics, clock: Any,
                 faults: Any = None) -> None:
        """``faults``: where a storage failure met by a command is kept (``storage``) until a
        command works again."""
        self._publish = publish
        self._faults = faults
        self._topics = topics
        self._clock = clock
        self._commands: dict[str, Command] = {}
        self.handled = 0
        self.rejected = 0
        self.register("help", lambda _: {"commands": {c.name: c.help for c in self._commands.values()}},
                      "list the commands this node understands")

    def register(self, name: str, handler: Handler, help: str) -> None:
        self._commands[name] = Command(name, handler, help)

    def handle(self, name: str, payload: bytes, *, retained: bool = False) -> dict[str, Any]:
        """Run one command and publish its reply; returns the reply. A ``retained`` command
        (kept by the broker, delivered again at every reconnect) is not run: the reply says so."""
        reply: dict[str, Any] = {"command": name, "utc": t.iso(self._clock.utc())}
        try:
            if retained and not payload:
                return reply  # the sender clearing its retained message: nothing to answer
            args = t.decode(payload)
            if "id" in args:
                reply["id"] = str(args["id"])[:64] if _scalar(args["id"]) else "invalid"
                args.pop("id")
            if retained:
                raise CommandError(RETAINED_REFUSAL)
            cmd = self._commands.get(name)
            if cmd is None:
                raise CommandError(f"unknown command {name!r}; known: {', '.join(sorted(self._commands))}")
            reply["result"] = cmd.handler(args)
            reply["ok"] = True
            self.handled += 1
            if self._faults is not None:
                # a command that worked ends the fault an earlier one met; a card still failing
                # stays a fault through the recorder's own error, which it meets continuously
                self._faults.set("storage", None)
        except (CommandError, ValueError) as exc:
            reply.update(ok=False, error=str(exc))
            self.rejected += 1
            log.warning("command %s rejected: %s", name, exc)
        except (OSError, sqlite3.Error) as exc:  # the card, not the request: say what, keep it
            problem = storage_problem(exc)
            reply.update(ok=False, error=problem)
            self.rejected += 1
            log.error("command %s: %s", name, problem)
            if self._faults is not None:
                self._faults.set("storage", problem)
        except Exception as exc:  # a handler bug must not kill the network thread
            reply.update(ok=False, error=f"internal error: {type(exc).__name__}: {exc}")
            self.rejected += 1
            log.exception("command %s failed", name)
        safe_name = name if name and "/" not in name and len(name) <= 64 else "invalid"
        self._publish(self._topics.reply(safe_name), reply)
        return reply


RETAINED_REFUSAL = ("retained command ignored: it would run again at every reconnect; publish "
                    "commands without the retain flag (and clear this one with an empty retained "
                    "message)")


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float) and not isinstance(v, bool)


def storage_problem(exc: BaseException) -> str:
    """A storage failure in words: read-only, full, or the system's own reason."""
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    if code == errno.EROFS or "readonly" in text or "read-only" in text:
        return "storage is read-only: nothing could be written (card locked, failing or remounted)"
    if code == errno.ENOSPC or "disk is full" in text or "database or disk is full" in text:
        return "storage is full: nothing could be written"
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return f"storage error: {getattr(exc, 'strerror', None) or exc}{where}"


def expect_keys(args: dict[str, Any], allowed: set[str]) -> None:
    """Reject unknown argument names (a typo must not be silently ignored)."""
    unknown = sorted(set(args) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        raise CommandError(f"unknown argument(s) {', '.join(unknown)}; expected {expected}")
