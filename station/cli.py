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

from station.connect import StationError, add_connection_args, connection_from_args


def _cmd_watch(args: argparse.Namespace) -> int:
    from station.watch import Watcher

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    w = Watcher(connection_from_args(args), raw_json=args.json)
    w.start()
    stop.wait(args.seconds)
    w.stop()
    return 0


def _cmd_fleet(args: argparse.Namespace) -> int:
    import time

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
        if end is not None and time.monotonic() >= end:
            break
    w.stop()
    return 0


def _send(args: argparse.Namespace, name: str, payload: dict) -> int:
    from station.console import request

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
    cl.add_argument("--start", required=True, help="UTC, ISO 8601 (e.g. 2026-11-22T18:00:00Z)")
    cl.add_argument("--end", required=True)
    cl.add_argument("--out", default=".", help="directory for the clip and its manifest")
    cl.add_argument("--timeout", type=float, default=60.0,
                    help="give up when the node sends nothing for this long (s)")
    cl.set_defaults(func=_cmd_clip)

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
