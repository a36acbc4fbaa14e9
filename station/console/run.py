"""``camnode-station console``: build the web console from its settings and serve it (uvicorn).

Composition root: database (the archive's URL; the console's tables are created there),
session secret (a 0600 file made at first start, never on a command line), inventory, MQTT
bridge, node commands, then the app. Stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from station.connect import Connection
from station.secret_file import read_or_create

log = logging.getLogger(__name__)


@dataclass
class Settings:
    db: str
    connection: Connection = field(default_factory=Connection)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    secret_file: str = "var/console.secret"
    #: snapshots folder of the archive (default: beside a SQLite file, as ``serve``'s)
    media: str = ""
    #: where evidence cases are built (default: ``cases`` beside the media folder)
    cases: str = ""
    #: an inventory CSV imported into the archive at start (the archive keeps it)
    inventory: str = ""
    tz: str = "Asia/Ho_Chi_Minh"
    tile_url: str = ""
    live_url: str = ""
    #: the station's state directory holding ``live-secret`` (default: as ``camnode-station relay``)
    station_dir: str = ""
    command_timeout_s: float = 10.0
    https_only: bool = False


def read_secret(path: Path) -> str:
    """The session-signing key: read, or created (0600) at first start."""
    key = read_or_create(path, lambda: secrets.token_urlsafe(48))
    if len(key) < 32:
        raise ValueError(f"{path}: session secret too short (delete it to make a new one)")
    return key


def live_secret(settings: Settings) -> bytes:
    """The station's secret the console signs viewer tokens with, from its 0600 file (never from a
    command line); empty when the console embeds no live view."""
    if not settings.live_url:
        return b""
    from station.live.credentials import load_secret, station_dir

    if "#" in settings.live_url or "key=" in settings.live_url or "token=" in settings.live_url:
        raise ValueError("--live-url carries no key: the console reads it from the station directory")
    return load_secret(station_dir(settings.station_dir or None))


def open_db(url: str) -> sa.Engine:
    """The archive's engine, its migrations (the console's tables included) brought up to date."""
    from station.archive.db import open_archive

    return open_archive(url)


def build(settings: Settings, clock: Any = None):
    """(app, bridge): the FastAPI app and the started MQTT bridge feeding it."""
    from node.clock import SystemClock
    from station.archive.inventory import import_csv
    from station.command import request
    from station.console.archive_view import ArchiveView
    from station.console.cases import CaseJobs
    from station.console.context import Console
    from station.console.feed import LiveState, MqttBridge
    from station.console.i18n import WardTime
    from station.console.web import create_app
    from station.evidence import collect
    from station.service.config import ServeConfig

    clock = clock or SystemClock()
    engine = open_db(settings.db)
    if settings.inventory:
        import_csv(engine, settings.inventory, clock.utc().replace(tzinfo=None))
    media = Path(settings.media) if settings.media else ServeConfig(db=settings.db).media_dir()
    archive = ArchiveView(engine, media)
    conn = settings.connection

    live = LiveState(clock)
    bridge = MqttBridge(conn, live.on_message)  # the console's one broker session, shared below

    def run_case(event_id: str, window: Any, out_dir: Path, poles: list[str], actor: str) -> dict[str, Any]:
        return collect(engine, media, bridge.session, event_id, window, out_dir, poles=poles,
                       actor=f"console:{actor}", clock=clock)

    cases = CaseJobs(run_case, Path(settings.cases) if settings.cases else media.parent / "cases", clock)

    def command(node: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return request(bridge.session, node, name, args, timeout_s=settings.command_timeout_s)

    console = Console(engine=engine, live=live, clock=clock, ward=WardTime(settings.tz),
                      poles=archive.poles, command=command, archive=archive, cases=cases,
                      secret_key=read_secret(Path(settings.secret_file)), tile_url=settings.tile_url,
                      live_url=settings.live_url, live_secret=live_secret(settings),
                      https_only=settings.https_only)
    return create_app(console), bridge.start()


def serve(settings: Settings) -> int:
    import uvicorn

    from station.archive.db import ArchiveError
    from station.connect import StationError

    try:
        app, bridge = build(settings)
    except (ValueError, OSError, ArchiveError) as exc:  # secret, inventory, database
        raise StationError(str(exc)) from None
    config = uvicorn.Config(app, host=settings.listen_host, port=settings.listen_port, log_level="warning",
                            timeout_graceful_shutdown=2, access_log=False)
    server = uvicorn.Server(config)
    print(f"console: http://{settings.listen_host}:{settings.listen_port}/", flush=True)
    try:
        server.run()
    finally:
        bridge.stop()
    return 0
