"""``camnode-station``: the central station's and the technician's console over MQTT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def _cmd_watch(args: argparse.Namespace) -> int:
    from station.watch import Watcher

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    w = Watcher(args.host, args.port, args.prefix, raw_json=args.json, username=args.username,
                password=args.password)
    w.start()
    stop.wait(args.seconds)
    w.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camnode-station", description="Station and technician console.")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch", help="print status, heartbeats and events of every node")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=1883)
    w.add_argument("--prefix", default="camnode")
    w.add_argument("--username", default="")
    w.add_argument("--password", default="")
    w.add_argument("--json", action="store_true", help="print raw JSON payloads")
    w.add_argument("--seconds", type=float, default=None, help="stop after this long")
    w.set_defaults(func=_cmd_watch)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
