"""``camnode-station``: the central station's and the technician's console over MQTT.

Every subcommand connects the same way (:mod:`station.connect`): the password from
``--password-file`` (or stdin, or ``CAMNODE_MQTT_PASSWORD``), never from the command line.
Exit codes: 0 done, 1 not done (the one-line reason on stderr: unknown host, connection refused,
TLS failure, not authorised, no reply in time, the node refused), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from station.connect import StationError, UsageError, add_connection_args, connection_from_args


def host_port(text: str) -> str:
    """argparse type of ``--listen HOST:PORT``: a port 1-65535 after the last colon."""
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return text


def time_zone(text: str) -> str:
    """argparse type of ``--tz``: an IANA zone name this machine knows (Asia/Ho_Chi_Minh)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {text!r} (e.g. Asia/Ho_Chi_Minh)") from None
    return text


def _cmd_watch(args: argparse.Namespace) -> int:
    from station.watch import Watcher

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    w = Watcher(connection_from_args(args), raw_json=args.json)
    w.start()
    end = None if args.seconds is None else time.monotonic() + args.seconds
    while not stop.wait(0.2) and not w.ended.is_set():
        if end is not None and time.monotonic() >= end:
            break
    w.stop()
    if w.ended.is_set():
        raise StationError(w.end_reason or "the connection ended")
    return 0


def _cmd_fleet(args: argparse.Namespace) -> int:
    from node.clock import SystemClock
    from station.fleet import Fleet, render
    from station.watch import Watcher

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fleet = Fleet(SystemClock())
    conn = connection_from_args(args)
    w = Watcher(conn, sink=fleet.feed, quiet=True)
    w.start()
    end = None if args.seconds is None else time.monotonic() + args.seconds
    tty = sys.stdout.isatty()
    while not stop.wait(args.every):
        head = f"broker {conn.where}" + (f" — {w.connect_error}" if w.connect_error else "")
        print(("\x1b[H\x1b[2J" if tty else "") + head + "\n" + render(fleet.rows()) + ("" if tty else "\n"),
              flush=True)
        if (end is not None and time.monotonic() >= end) or w.ended.is_set():
            break
    w.stop()
    if w.ended.is_set():
        raise StationError(w.end_reason or "the connection ended")
    return 0


def _send(args: argparse.Namespace, name: str, payload: dict) -> int:
    from station.command import request

    reply = request(connection_from_args(args), args.node, name, payload, timeout_s=args.timeout)
    print(json.dumps(reply, indent=2, sort_keys=True))
    if not reply.get("ok"):
        print(f"camnode-station: {args.node} refused {name!r}: {reply.get('error', '?')}", file=sys.stderr)
        return 1
    return 0


def _cmd_clip(args: argparse.Namespace) -> int:
    from pathlib import Path

    from station.clips import fetch_clip

    try:
        clip, manifest = fetch_clip(connection_from_args(args), args.node, args.start, args.end,
                                    Path(args.out), idle_s=args.timeout)
    except OSError as exc:
        raise StationError(f"cannot write the clip into {args.out}: {exc.strerror or exc}") from None
    print(f"{clip} ({clip.stat().st_size} bytes), manifest {manifest}")
    return 0


def _cmd_cmd(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.args) if args.args else {}
    except ValueError as exc:
        print(f"camnode-station: arguments are not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(payload, dict):
        print("camnode-station: arguments must be a JSON object, e.g. '{\"mode\": \"night\"}'",
              file=sys.stderr)
        return 2
    return _send(args, args.name, payload)


def _cmd_diag(args: argparse.Namespace) -> int:
    return _send(args, "diag", {})


def _cmd_ir(args: argparse.Namespace) -> int:
    mode = {"on": "night", "off": "day", "auto": "auto"}[args.state]
    payload: dict = {"mode": mode}
    if args.minutes is not None:
        payload["minutes"] = args.minutes
    return _send(args, "ir", payload)


def _cmd_live(args: argparse.Namespace) -> int:
    from pathlib import Path

    from station.command import request
    from station.live.credentials import station_dir
    from station.live.session import LiveError, start_live

    conn = connection_from_args(args)

    def ask(name: str, payload: dict) -> dict:
        return request(conn, args.node, name, payload, timeout_s=args.timeout)

    if args.stop:
        return _send(args, "live", {"stop": True})
    try:
        state = Path(station_dir(args.station_dir))
        reply, url, page = start_live(ask, args.node, args.stream, args.minutes, state, wait_s=args.wait)
    except (LiveError, StationError, OSError) as exc:
        print(f"camnode-station: {exc}", file=sys.stderr)
        return 1
    if args.url:
        print(url)
        print(page, flush=True)
    else:
        print(json.dumps(reply.get("result", {}), indent=2, sort_keys=True))
        print(f"RTSP:    {url}\nbrowser: {page}", flush=True)
    return 0


def _relay_nodes(args: argparse.Namespace) -> list[str]:
    """The node ids given, plus the ward file's nodes provisioned with live view (none yet is
    fine with ``--ward``: the relay waits for a reload)."""
    from pathlib import Path

    from station.live.roster import RosterError, live_nodes

    nodes = list(args.nodes)
    if args.ward:
        try:
            nodes += live_nodes(Path(args.ward))
        except RosterError as exc:
            raise StationError(str(exc)) from None
    if not nodes and not args.ward:
        raise UsageError("no node may publish: give node ids, or --ward with a ward.json whose nodes "
                           "were provisioned with --relay")
    return list(dict.fromkeys(nodes))


def _cmd_relay(args: argparse.Namespace) -> int:
    """Run the relay until SIGINT/SIGTERM; SIGHUP reads the node list again (``--ward``) and,
    when it changed, restarts the relay on the same ports (pushes in progress end; a node
    starts a new one on its next request)."""
    from pathlib import Path

    from station.live.credentials import station_dir
    from station.live.relay import Relay, RelayError

    nodes = _relay_nodes(args)
    wake, stop, hup = threading.Event(), threading.Event(), threading.Event()

    def on(event: threading.Event):
        return lambda *_: (event.set(), wake.set())

    signal.signal(signal.SIGINT, on(stop))
    signal.signal(signal.SIGTERM, on(stop))
    signal.signal(signal.SIGHUP, on(hup))
    port, web_port = args.rtsp_port, args.web_port
    while True:
        relay = Relay(Path(station_dir(args.station_dir)), nodes, listen=args.listen, port=port,
                      public_host=args.public_host, web_port=web_port)
        try:
            base = relay.start()
        except (RelayError, OSError, ValueError) as exc:  # (ValueError: the station's secret)
            print(f"camnode-station: {exc}", file=sys.stderr)
            return 1
        port, web_port = relay.port, relay.web_port
        who = ", ".join(nodes) or "no node yet (reload after provisioning one with --relay)"
        print(f"relay: RTSP at {base}/<node>/<main|sub> for {who}; Ctrl-C to stop", flush=True)
        while True:
            wake.wait()
            wake.clear()
            if stop.is_set():
                relay.stop()
                return 0
            if hup.is_set():
                hup.clear()
                try:
                    again = _relay_nodes(args)
                except StationError as exc:  # a bad copy of ward.json: keep serving the old list
                    print(f"camnode-station: reload: {exc}; the relay keeps its node list", file=sys.stderr,
                          flush=True)
                    continue
                if again != nodes:
                    nodes = again
                    break
                print("relay: reload: node list unchanged", flush=True)
        relay.stop()


def _cmd_live_secret(args: argparse.Namespace) -> int:
    """Make the station's live secret if there is none; print its path (never the secret)."""
    from pathlib import Path

    from station.live.credentials import load_secret, station_dir

    folder = Path(station_dir(args.station_dir))
    try:
        load_secret(folder)
    except OSError as exc:
        raise StationError(f"{folder / 'live-secret'}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise StationError(str(exc)) from None
    print(f"{folder / 'live-secret'} (0600): give a copy to camnode-provision node --live-secret; "
          "keep it off cards and command lines")
    return 0


def _cmd_console(args: argparse.Namespace) -> int:
    from station.console.run import Settings, serve

    host, _, port = args.listen.rpartition(":")
    return serve(Settings(
        db=args.db, connection=connection_from_args(args), listen_host=host or "127.0.0.1",
        listen_port=int(port), secret_file=args.secret_file, inventory=args.inventory, tz=args.tz,
        media=args.media, cases=args.cases,
        tile_url=args.tile_url, live_url=args.live_url, station_dir=args.station_dir or "",
        https_only=args.https_only))


def _cmd_console_user(args: argparse.Namespace) -> int:
    import getpass
    from datetime import UTC, datetime

    from station.archive.db import ArchiveError
    from station.console.run import open_db
    from station.console.users import UserError, create_user, set_password

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    try:
        engine = open_db(args.db)
    except ArchiveError as exc:
        raise StationError(str(exc)) from None
    try:
        if args.action == "add":
            create_user(engine, args.username, password, args.role, datetime.now(UTC), args.name)
        else:
            set_password(engine, args.username, password)
    except UserError as exc:
        raise StationError(str(exc)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camnode-station", description="Station and technician console.")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch", help="print status, heartbeats and events of every node")
    add_connection_args(w)
    w.add_argument("--json", action="store_true", help="print raw JSON payloads")
    w.add_argument("--seconds", type=float, default=None, help="stop after this long")
    w.set_defaults(func=_cmd_watch)

    f = sub.add_parser("fleet", help="one row per node, worst first (lost, silent, faults)")
    add_connection_args(f)
    f.add_argument("--every", type=float, default=2.0, help="refresh period (s)")
    f.add_argument("--seconds", type=float, default=None, help="stop after this long")
    f.set_defaults(func=_cmd_fleet)

    cl = sub.add_parser("clip", help="pull footage of a UTC range from a node (MP4 + manifest)")
    add_connection_args(cl)
    cl.add_argument("node")
    cl.add_argument("--start", required=True,
                    help="ISO 8601 with a zone (2026-11-22T18:00:00Z or ...+07:00); the node refuses a "
                    "time without one")
    cl.add_argument("--end", required=True, help="ISO 8601 with a zone")
    cl.add_argument("--out", default=".", help="directory for the clip and its manifest")
    cl.add_argument("--timeout", type=float, default=60.0,
                    help="give up when the node sends nothing for this long (s)")
    cl.set_defaults(func=_cmd_clip)

    lv = sub.add_parser("live", help="start live view of a node; print its RTSP and browser URLs")
    add_connection_args(lv)
    lv.add_argument("node")
    lv.add_argument("--stream", choices=("sub", "main"), default="sub")
    lv.add_argument("--minutes", type=float, default=None, help="session length (node default 5)")
    lv.add_argument("--stop", action="store_true", help="end the node's live sessions")
    lv.add_argument("--url", action="store_true", help="print only the RTSP URL, then the browser URL")
    lv.add_argument("--timeout", type=float, default=10.0, help="wait for the node's reply (s)")
    lv.add_argument("--wait", type=float, default=20.0, help="wait for the stream to play (s)")
    lv.add_argument("--station-dir", default=None, help="station state (default $CAMNODE_STATION_DIR "
                    "or var/station)")
    lv.set_defaults(func=_cmd_live)

    rl = sub.add_parser("relay", help="run the media relay (RTSP in from nodes, RTSP/WebRTC out)")
    rl.add_argument("nodes", nargs="*", help="node ids allowed to publish (besides --ward's)")
    rl.add_argument("--ward", default="", metavar="WARD_JSON",
                    help="a copy of the ward's ward.json (or its folder): its nodes provisioned with "
                    "--relay may publish; SIGHUP reads it again")
    rl.add_argument("--listen", default="127.0.0.1")
    rl.add_argument("--rtsp-port", type=int, default=8554)
    rl.add_argument("--web-port", type=int, default=8089)
    rl.add_argument("--public-host", default="", help="host name in printed URLs")
    rl.add_argument("--station-dir", default=None)
    rl.set_defaults(func=_cmd_relay)
    ls = sub.add_parser("live-secret", help="make the station's live-view secret (if none) and print its "
                        "path: what camnode-provision derives each node's stream password from")
    ls.add_argument("--station-dir", default=None, help="station state (default $CAMNODE_STATION_DIR "
                    "or var/station)")
    ls.set_defaults(func=_cmd_live_secret)
    co = sub.add_parser("console", help="the web console (fleet, alerts, live, search, evidence)")
    add_connection_args(co)
    co.add_argument("--db", required=True, help="database URL (the archive's: sqlite:///FILE or postgresql://...)")
    co.add_argument("--listen", type=host_port, default="127.0.0.1:8080", help="HOST:PORT to serve on")
    co.add_argument("--secret-file", default="var/console.secret",
                    help="session key (created at first start)")
    co.add_argument("--media", default="",
                    help="the archive's snapshots folder (default: beside a SQLite file)")
    co.add_argument("--cases", default="", help="where evidence cases are built (default: beside the media)")
    co.add_argument("--inventory", default="",
                    help="inventory CSV to import into the archive (node_id, pole, lat, lon, neighbours...)")
    co.add_argument("--tz", type=time_zone, default="Asia/Ho_Chi_Minh",
                    help="the ward's time zone (times are stored UTC)")
    co.add_argument("--tile-url", default="", help="optional map tiles, e.g. http://tiles.local/{z}/{x}/{y}.png")
    co.add_argument("--live-url", default="", help="the media relay's page of one pole ({node}, {stream}), "
                    "without a key: the console signs a viewer token per page with the station's secret")
    co.add_argument("--station-dir", default=None, help="station state holding live-secret (default "
                    "$CAMNODE_STATION_DIR, else var/station)")
    co.add_argument("--https-only", action="store_true",
                    help="mark the session cookie Secure (behind a TLS-terminating proxy)")
    co.set_defaults(func=_cmd_console)

    cu = sub.add_parser("console-user",
                        help="add a console user or set a password (asked, or --password-stdin)")
    cu.add_argument("action", choices=("add", "password"))
    cu.add_argument("username")
    cu.add_argument("--db", required=True)
    cu.add_argument("--role", default="operator", choices=("operator", "technician", "admin"))
    cu.add_argument("--name", default="", help="display name")
    cu.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    cu.set_defaults(func=_cmd_console_user)

    for name, helptext, func in (
        ("diag", "full diagnostics of one node", _cmd_diag),
        ("ir", "switch a node's IR light: on (night), off (day) or auto", _cmd_ir),
        ("cmd", "send any command (JSON arguments) and print the reply", _cmd_cmd),
    ):
        c = sub.add_parser(name, help=helptext)
        add_connection_args(c)
        c.add_argument("--timeout", type=float, default=10.0)
        c.add_argument("node", help="node id")
        if name == "ir":
            c.add_argument("state", choices=("on", "off", "auto"))
            c.add_argument("--minutes", type=float, default=None, help="override length")
        if name == "cmd":
            c.add_argument("name", help="command name (try 'help')")
            c.add_argument("args", nargs="?", default="", help="JSON object of arguments")
        c.set_defaults(func=func)

    from station.cli_archive import add_parsers

    add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StationError as exc:
        print(f"camnode-station: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
