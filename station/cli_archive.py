"""``camnode-station serve`` and ``camnode-station events``: the archive's command line.

``serve`` runs until SIGTERM/SIGINT (systemd ``Type=notify``: READY once the archive is open
and migrated). ``events`` searches: one JSON object per line with ``--json`` (``id``, ``node``,
``kind``, ``label``, ``phase``, ``start`` and the rest), else one readable line per event in
the ward's time zone. Both exit non-zero with a one-line reason when they cannot do their job.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from station.archive.db import writing

log = logging.getLogger("camnode-station")


def _fail(msg: str, code: int = 1) -> int:
    print(f"camnode-station: {msg}", file=sys.stderr)
    return code


def _cmd_serve(args: argparse.Namespace) -> int:
    from node.clock import SystemClock
    from node.sdnotify import Notifier
    from station.archive.db import ArchiveError, open_archive
    from station.service.config import ConfigError, load
    from station.service.session import Service

    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load(args.config, {
            "host": args.host, "port": args.port, "prefix": args.prefix, "username": args.username,
            "password_file": args.password_file, "tls_ca": args.tls_ca, "client_id": args.client_id,
            "share_group": args.share_group, "session_expiry_h": args.session_expiry_h,
            "db": args.db, "media": args.media})
        password = cfg.read_password()
        engine = open_archive(cfg.db)
    except (ConfigError, ArchiveError) as exc:
        return _fail(str(exc))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = Service(cfg, engine, SystemClock(), password=password)
    try:
        service.start()
    except (OSError, ValueError) as exc:  # unreadable CA file, bad host name
        return _fail(f"broker {cfg.host}:{cfg.port}: {exc}")
    notifier = Notifier()
    notifier.ready(f"archiving into {engine.url.render_as_string()}")
    log.info("serving: broker %s:%d, archive %s", cfg.host, cfg.port, engine.url.render_as_string())
    beat = min(30.0, notifier.watchdog_s / 2) if notifier.watchdog_s else 30.0
    while not stop.wait(beat):
        line = service.status_line()
        notifier.notify(("WATCHDOG=1\n" if service.progressing() else "") + f"STATUS={line}")
        log.info("%s", line)
    notifier.notify("STOPPING=1")
    service.stop()
    log.info("stopped: %s", service.status_line())
    return 0


def parse_when(text: str, name: str) -> datetime:
    """ISO 8601 (a time without zone is UTC), a date, or ``-2h`` / ``-30m`` / ``-1d`` from now."""
    t = text.strip()
    if t.startswith("-") and t[-1:] in ("m", "h", "d") and t[1:-1].replace(".", "", 1).isdigit():
        unit = {"m": "minutes", "h": "hours", "d": "days"}[t[-1]]
        return datetime.now(UTC).replace(tzinfo=None) - timedelta(**{unit: float(t[1:-1])})
    try:
        ts = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--{name} {text!r}: use ISO 8601 (2026-11-22T18:00Z), a date, or -2h") from None
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _query_from_args(args: argparse.Namespace):
    from station.archive.query import EventQuery

    near = None
    if args.near:
        try:
            lat, lon = (float(v) for v in args.near.split(","))
        except ValueError:
            raise ValueError(f"--near {args.near!r}: expected LAT,LON (e.g. 52.52,13.40)") from None
        near = (lat, lon)
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    return EventQuery(
        since=parse_when(args.since, "since") if args.since else None,
        until=parse_when(args.until, "until") if args.until else None,
        nodes=tuple(args.node or ()), site=args.site, near=near, radius_m=args.radius,
        label=args.cls, colour=args.colour.lower() if args.colour else None, kind=args.kind,
        limit=args.limit, newest_first=not args.oldest_first)


def _cmd_events(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from station.archive.db import ArchiveError
    from station.archive.query import event_key, search_page

    try:
        q = _query_from_args(args)
        zone = ZoneInfo(args.tz) if args.tz else None
    except (ValueError, ZoneInfoNotFoundError) as exc:
        return _fail(str(exc) if not isinstance(exc, ZoneInfoNotFoundError) else f"unknown --tz {args.tz}", 2)
    try:
        engine = _open_existing(args.db)
        if args.after_id:
            key = event_key(engine, args.after_id)
            if key is None:
                return _fail(f"--after-id {args.after_id[:96]!r}: no such event in the archive", 2)
            q = replace(q, after=key)
        page = search_page(engine, q)
        rows = page.rows
    except ArchiveError as exc:
        return _fail(str(exc))
    except Exception as exc:  # e.g. a database without the archive's tables
        return _fail(f"search failed: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}")
    for r in rows:
        if args.json:
            print(json.dumps(r, sort_keys=True))
            continue
        start = datetime.fromisoformat(r["start"].replace("Z", "+00:00")).astimezone(zone)
        colours = "/".join(c for c in (r["colour_upper"], r["colour_lower"], r["colour_body"]) if c)
        print(f"{start:%Y-%m-%d %H:%M:%S %Z} {r['node']:<16} {r['label'] or r['kind']:<10} "
              f"{r['phase']:<6} {colours:<14} {r['id']}")
    if page.more and not args.json:
        print(f"(more: --after-id {rows[-1]['id']})", file=sys.stderr)
    return 0


def _open_existing(db: str):
    """An archive that exists (a read command never creates one); raises ArchiveError."""
    from station.archive.db import ArchiveError, normalise_url, open_archive
    from station.archive.migrate import current

    url = normalise_url(db)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise ArchiveError(f"no archive at {db} (camnode-station serve creates it)")
    engine = open_archive(db, migrate=False)
    if current(engine) is None:
        engine.dispose()
        raise ArchiveError(f"{db} is not a camnode archive (camnode-station serve creates it)")
    return engine


def _cmd_trace(args: argparse.Namespace) -> int:
    from station.archive.db import ArchiveError
    from station.archive.trace import TraceError, trace

    try:
        engine = _open_existing(args.db)
        tr = trace(engine, args.event_id, minutes=args.minutes, radius_m=args.radius)
    except (ArchiveError, TraceError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({"origin": tr.origin, "path": tr.path, "candidates": tr.candidates,
                          "poles": tr.poles}, sort_keys=True))
        return 0
    print(f"path of {tr.origin['label'] or tr.origin['kind']} {tr.origin['id']} (poles searched: "
          f"{', '.join(tr.poles)}):")
    for e in tr.path:
        mark = "*" if e["id"] == tr.origin["id"] else " "
        sides = f"in {e['entry_side'] or '?':<6} out {e['exit_side'] or '?':<6}"
        print(f" {mark} {e['start']} {e['node']:<16} {sides} {e['id']}")
    print("candidates (matching colours first):")
    for e in tr.candidates:
        print(f"   {e['offset_s']:+8.0f}s {e['node']:<16} colours {e['colour_match']} "
              f"{'toward' if e['toward'] else '      '} {e['id']}")
    return 0


def _cmd_inventory(args: argparse.Namespace) -> int:
    from station.archive.db import ArchiveError, open_archive
    from station.archive.inventory import InventoryError, import_csv, list_nodes, parse_fields, upsert

    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        engine = open_archive(args.db)  # the inventory may come before any node: create/migrate
        if args.action == "import":
            counts = import_csv(engine, args.file, now, replace_keys=frozenset(args.replace_key))
            print(", ".join(f"{v} {k}" for k, v in counts.items()))
        elif args.action == "set":
            raw = {k: getattr(args, k) for k in ("site", "pole", "address", "lat", "lon", "facing_deg",
                                                  "neighbours", "pubkey") if getattr(args, k) is not None}
            if not raw:
                return _fail("inventory set: nothing to set (give --site, --lat, ... )", 2)
            print(upsert(engine, args.node, parse_fields(raw, "inventory set"), now,
                         replace_key=args.replace_key))
        else:
            for n in list_nodes(engine):
                if args.json:
                    print(json.dumps({**n, "updated": n["updated"].isoformat()}, sort_keys=True))
                else:
                    where = f"{n['lat']:.5f},{n['lon']:.5f}" if n["lat"] is not None else "?"
                    key = "yes" if n["pubkey"] else "NO"
                    print(f"{n['id']:<16} {n['site']:<14} {where:<22} facing {n['facing_deg'] or '?'} "
                          f"neighbours {' '.join(n['neighbours']) or '-'} key {key}")
    except (ArchiveError, InventoryError) as exc:
        return _fail(str(exc))
    return 0


def parse_span(text: str) -> timedelta:
    """``5m``, ``30s``, ``1h`` or plain seconds."""
    t = text.strip().lower()
    unit = {"s": 1, "m": 60, "h": 3600}.get(t[-1:])
    try:
        value = float(t[:-1]) if unit else float(t)
    except ValueError:
        raise ValueError(f"--window {text!r}: use 30s, 5m or 1h") from None
    if value <= 0:
        raise ValueError("--window must be positive")
    return timedelta(seconds=value * (unit or 1))


def _cmd_evidence(args: argparse.Namespace) -> int:
    from node.clock import SystemClock
    from station.archive.db import ArchiveError
    from station.connect import StationError, connection_from_args
    from station.evidence import EvidenceError, collect
    from station.service.config import ServeConfig

    try:
        window = parse_span(args.window)
    except ValueError as exc:
        return _fail(str(exc), 2)
    try:
        conn = connection_from_args(args)
    except StationError as exc:
        return _fail(str(exc), exc.exit_code)
    poles = [p for p in (args.poles or "").replace(",", " ").split() if p]
    media = Path(args.media) if args.media else ServeConfig(db=args.db).media_dir()
    try:
        engine = _open_existing(args.db)
        case = collect(engine, media, conn, args.event, window, Path(args.out), poles=poles,
                       actor=args.actor, clock=SystemClock(), idle_s=args.timeout)
    except (ArchiveError, EvidenceError, OSError) as exc:
        return _fail(str(exc))
    bad = [f"{p['node']}: {'; '.join(p['problems'])}" for p in case["poles"] if not p["verified"]]
    good = len(case["poles"]) - len(bad)
    print(f"{args.out}: {good} verified clip(s), {len(case['snapshots'])} snapshot(s); index.html, case.json")
    if bad:
        return _fail("not verified: " + " | ".join(bad))
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from sqlalchemy import delete, select

    from station.archive.db import ArchiveError, open_archive
    from station.archive.schema import rule_hits, rules
    from station.rules import RuleError, add_rule

    try:
        engine = open_archive(args.db)
        if args.action == "add":
            if bool(args.webhook) == bool(args.command):
                return _fail("rules add: give exactly one of --webhook URL or --command NODE/NAME", 2)
            try:
                cmd_args = json.loads(args.args) if args.args else {}
            except ValueError as exc:
                return _fail(f"--args is not JSON: {exc}", 2)
            if not isinstance(cmd_args, dict):
                return _fail("--args must be a JSON object", 2)
            rid = add_rule(engine, name=args.name, action="webhook" if args.webhook else "command",
                           target=args.webhook or args.command, classes=args.cls or [],
                           poles=[p for p in (args.poles or "").replace(",", " ").split() if p],
                           hours=args.hours, tz=args.tz, args=cmd_args,
                           now=datetime.now(UTC).replace(tzinfo=None))
            print(f"rule {rid} {args.name} added")
        elif args.action == "delete":
            with writing(engine) as conn:
                gone = conn.execute(delete(rules).where(rules.c.name == args.name)).rowcount
            if not gone:
                return _fail(f"no rule named {args.name!r}")
            print(f"rule {args.name} deleted")
        elif args.action == "hits":
            with engine.connect() as conn:
                q = select(rule_hits, rules.c.name).join(rules, rules.c.id == rule_hits.c.rule_id)
                for r in conn.execute(q.order_by(rule_hits.c.id.desc()).limit(args.limit)).mappings():
                    print(json.dumps({"rule": r["name"], "event": r["event_id"], "node": r["node"],
                                      "hit": r["hit"].isoformat() + "Z", "outcome": r["outcome"]}))
        else:
            with engine.connect() as conn:
                for r in conn.execute(select(rules).order_by(rules.c.id)).mappings():
                    print(json.dumps({k: (v.isoformat() + "Z" if isinstance(v, datetime) else v)
                                      for k, v in r.items()}, sort_keys=True))
    except (ArchiveError, RuleError) as exc:
        return _fail(str(exc))
    return 0


def add_parsers(sub) -> None:
    from station.connect import add_connection_args

    s = sub.add_parser("serve", help="the station service: archive every node's messages (systemd unit)")
    s.add_argument("--config", default=None, help="TOML config file (flags override it)")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--prefix", default=None)
    s.add_argument("--username", default=None, help="this instance's station user (e.g. station-a)")
    s.add_argument("--password-file", default=None, help="file holding the station user's password")
    s.add_argument("--tls-ca", default=None, help="the ward's CA certificate: connect with TLS")
    s.add_argument("--client-id", default=None, help="fixed MQTT client id of the persistent session")
    s.add_argument("--share-group", default=None,
                   help="split the load with other instances of this group ($share/GROUP/...)")
    s.add_argument("--session-expiry-h", type=float, default=None,
                   help="how long the broker queues for this service while it is away (h)")
    s.add_argument("--db", default=None, help="sqlite:///FILE (default) or postgresql://USER@HOST/DB")
    s.add_argument("--media", default=None, help="folder for snapshots (default: beside a SQLite file)")
    s.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    s.set_defaults(func=_cmd_serve)

    e = sub.add_parser("events", help="search the archive")
    e.add_argument("--db", required=True, help="sqlite:///FILE or postgresql://USER@HOST/DB")
    e.add_argument("--since", help="ISO 8601 (UTC unless a zone is given), a date, or -2h")
    e.add_argument("--until")
    e.add_argument("--node", action="append", help="node id (repeatable)")
    e.add_argument("--site")
    e.add_argument("--near", help="LAT,LON: poles within --radius of this point")
    e.add_argument("--radius", type=float, default=500.0, help="metres (default 500)")
    e.add_argument("--class", dest="cls", help="person, car, motorcycle, bicycle, bus, truck")
    e.add_argument("--colour", "--color", dest="colour", help="a named colour (red, blue, white...)")
    e.add_argument("--kind", choices=("object", "motion"))
    e.add_argument("--limit", type=int, default=100)
    e.add_argument("--oldest-first", action="store_true")
    e.add_argument("--after-id", metavar="ID",
                   help="the next page: the events after this one in the listing's order (its last id)")
    e.add_argument("--json", action="store_true", help="one JSON object per line")
    e.add_argument("--tz", default=None, help="time zone for the readable output (default: this machine's)")
    e.set_defaults(func=_cmd_events)

    t = sub.add_parser("trace", help="from one event: the same class on the poles around, where it went next")
    t.add_argument("event_id")
    t.add_argument("--db", required=True)
    t.add_argument("--minutes", type=float, default=10.0, help="± this many minutes (default 10)")
    t.add_argument("--radius", type=float, default=600.0, help="poles within this many metres count too")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_cmd_trace)

    ev = sub.add_parser("evidence", help="hold, pull and verify the footage of an event into a case folder")
    ev.add_argument("--event", required=True, help="archived event id")
    ev.add_argument("--window", default="5m", help="before the start and after the end (30s, 5m, 1h)")
    ev.add_argument("--poles", default="", help="more poles besides the event's (comma or space separated)")
    ev.add_argument("-o", "--out", required=True, help="case folder (new or empty)")
    ev.add_argument("--db", required=True)
    ev.add_argument("--media", default=None,
                    help="the service's snapshot folder (default: beside a SQLite file)")
    ev.add_argument("--actor", default="", help="who collects it (for the audit)")
    add_connection_args(ev)
    ev.add_argument("--timeout", type=float, default=60.0, help="give up on a pole silent this long (s)")
    ev.set_defaults(func=_cmd_evidence)

    r = sub.add_parser("rules", help="forwarding rules: class, poles, hours → webhook or command")
    r.add_argument("--db", required=True)
    rsub = r.add_subparsers(dest="action", required=True)
    ra = rsub.add_parser("add", help="add a rule")
    ra.add_argument("name")
    ra.add_argument("--class", dest="cls", action="append", help="object class (repeatable; none: any)")
    ra.add_argument("--poles", default="", help="node ids (comma or space separated; none: any)")
    ra.add_argument("--hours", default="", help="local time window, e.g. 22:00-06:00 (none: always)")
    ra.add_argument("--tz", default="UTC", help="time zone of --hours (e.g. Europe/Berlin)")
    ra.add_argument("--webhook", default="", help="POST the event as JSON to this URL")
    ra.add_argument("--command", default="", help="NODE/NAME or */NAME (the event's pole), e.g. */hold")
    ra.add_argument("--args", default="", help="JSON arguments of the command")
    rd = rsub.add_parser("delete", help="delete a rule")
    rd.add_argument("name")
    rh = rsub.add_parser("hits", help="recent rule hits and their outcome")
    rh.add_argument("--limit", type=int, default=50)
    rsub.add_parser("list", help="every rule")
    r.set_defaults(func=_cmd_rules)

    i = sub.add_parser("inventory", help="the poles: import provisioning's inventory.csv, edit, list")
    i.add_argument("--db", required=True)
    isub = i.add_subparsers(dest="action", required=True)
    imp = isub.add_parser("import", help="import inventory.csv (provisioning's, plus the ward's columns)")
    imp.add_argument("file")
    imp.add_argument("--replace-key", action="append", default=[], metavar="NODE",
                     help="accept a new signing key for NODE (a re-keyed pole); without it a key that "
                     "differs from the trusted one is refused")
    st = isub.add_parser("set", help="edit one node")
    st.add_argument("node")
    for opt in ("site", "pole", "address", "lat", "lon", "facing-deg", "neighbours", "pubkey"):
        st.add_argument(f"--{opt}", dest=opt.replace("-", "_"))
    st.add_argument("--replace-key", action="store_true",
                    help="with --pubkey: replace the node's trusted signing key (a re-keyed pole)")
    ls = isub.add_parser("list", help="every node")
    ls.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_inventory)
