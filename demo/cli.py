"""``camnode-demo`` (``make run``): command-line arguments of the demo."""

from __future__ import annotations

import argparse

from demo.run import run_demo
from station.cli import host_port


def build_parser() -> argparse.ArgumentParser:
    demo = argparse.ArgumentParser(
        prog="camnode-demo",
        description="local broker + node on the demo scene + station service, relay and console")
    demo.add_argument("--storage", default="var/demo", help="where the demo keeps its footage")
    demo.add_argument("--heartbeat-s", type=float, default=3.0)
    demo.add_argument("--model-dir", default="",
                      help="directory holding ssd_mobilenet_v1_coco_quant.tflite and coco_labels.txt "
                      "(person detection); without it the demo runs motion detection only")
    demo.add_argument("--console-listen", type=host_port, default="127.0.0.1:8080",
                      help="HOST:PORT of the demo's web console")
    demo.add_argument("--source", default="synthetic",
                      help="camera.source for the demo (default: the built-in street scene)")
    return demo


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_demo(storage=args.storage, heartbeat_s=args.heartbeat_s, model_dir=args.model_dir,
                    source=args.source, console_listen=args.console_listen)
