"""``camnode``: the node daemon and its local tools.

Exit codes: 0 ok, 1 runtime failure, 2 bad config or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from hw.redact import redact_url
from node import __version__
from node.config import Config, ConfigError, example_toml, load_config, schema

log = logging.getLogger("node.cli")


def _cmd_run(args: argparse.Namespace) -> int:
    from node import logs
    from node.app import Node

    cfg, warnings = _checked_config(args.config)
    logs.setup(cfg.log.level)
    for warning in warnings:
        log.warning("%s", warning)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s received", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node = Node(cfg, base_dir=_base_dir(args.config))
    node.run(stop)
    return 0


def _base_dir(config: str | None) -> str | None:
    """Relative paths in a config file (model, labels) are relative to the file's directory."""
    return str(Path(config).resolve().parent) if config else None


def _checked_config(path: str | None) -> tuple[Config, list[str]]:
    """The one validation path of ``run`` and ``config check``: the file, then the machine.
    Raises :class:`ConfigError` (exit 2, field named); returns the config and its warnings.
    Without a file (the built-in demo) a missing model means motion detection only."""
    from node.preflight import require

    cfg = load_config(path)
    return cfg, require(cfg, path or "<defaults>", _base_dir(path), need_model=path is not None)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from node.preflight import examine

    cfg = load_config(args.file)
    found = examine(cfg, args.file, _base_dir(args.file))
    for warning in found.warnings:
        print(f"{args.file}: warning: {warning}")
    if found.errors:
        for problem in found.errors:
            print(f"camnode: config error: {problem}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK (node {cfg.node.id}, source {redact_url(cfg.camera.source)}, "
          f"broker {cfg.mqtt.host}:{cfg.mqtt.port})")
    return 0


def _cmd_config_schema(args: argparse.Namespace) -> int:
    if args.toml:
        print(example_toml())
    else:
        print(json.dumps(schema(), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camnode", description="Street camera node firmware.")
    p.add_argument("--version", action="version", version=f"camnode {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the node (no --config: the built-in demo scene)")
    run.add_argument("--config", "-c", help="TOML config file")
    run.set_defaults(func=_cmd_run)

    cfg = sub.add_parser("config", help="check a config file or print the schema")
    csub = cfg.add_subparsers(dest="config_command", required=True)
    chk = csub.add_parser("check", help="validate a config file")
    chk.add_argument("file")
    chk.set_defaults(func=_cmd_config_check)
    sch = csub.add_parser("schema", help="print every section and field with its description")
    sch.add_argument("--toml", action="store_true", help="as a commented example config file")
    sch.set_defaults(func=_cmd_config_schema)


    from node import hwcheck

    hw = sub.add_parser("hwcheck", help="check this board's camera, encoder, IR, IR-cut, light sensor, "
                        "LED and temperatures (stop the camnode service first)")
    hwcheck.add_arguments(hw)
    hw.set_defaults(func=hwcheck.run)

    from node.record import cli as record_cli

    record_cli.register(sub)  # storage plan, clip, verify
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"camnode: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


