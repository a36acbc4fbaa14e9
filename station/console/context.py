"""Everything the console's pages need, handed in by the composition root (``web.create_app``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from station.console.feed import LiveState
from station.console.i18n import WardTime
from station.console.plan import Pole


class UtcClock(Protocol):
    def utc(self) -> datetime: ...

    def monotonic(self) -> float: ...


#: ``command(node_id, name, args) -> reply`` — sends one node command and waits for its reply
#: (raises ``TimeoutError``/``OSError`` when there is none).
Commander = Callable[[str, str, dict[str, Any]], dict[str, Any]]


@dataclass
class Console:
    engine: sa.Engine
    live: LiveState
    clock: UtcClock
    ward: WardTime
    poles: Callable[[], list[Pole]]
    command: Commander
    secret_key: str
    tile_url: str = ""
    #: the media relay's browser page of one pole: ``{node}`` and ``{stream}`` are filled in
    live_url: str = ""
    #: the station's secret (its 0600 file): the console signs a viewer token with it for each
    #: player page it draws, only for users with the ``live`` permission
    live_secret: bytes = field(default=b"", repr=False)
    https_only: bool = False
    #: the station's archive (``archive_view.ArchiveView``): search, trace, snapshots, history
    archive: Any = None
    #: evidence cases (``cases.CaseJobs``)
    cases: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
