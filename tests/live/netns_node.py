"""A node in its own network namespace for the 4G-link test, driven over stdin/stdout.

    ip netns exec NS python tests/live/netns_node.py < commands

First line: the node's config as JSON. Then one JSON object a line: ``{"live": {...}}`` runs
the ``cmd/live`` handler and prints its result or error; ``{"status": true}`` prints the live
state and the recorder's loss counters; end of input stops the node cleanly.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.app import Node
from node.config import config_from_dict
from node.link.router import CommandError


def main() -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(name)s %(message)s")
    node = Node(config_from_dict(json.loads(sys.stdin.readline())), analysis=False)
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,), name="netns-node")
    th.start()
    for line in sys.stdin:
        req = json.loads(line)
        if "live" in req:
            try:
                out = {"ok": True, "result": node.live.command(req["live"])}
            except CommandError as exc:
                out = {"ok": False, "error": str(exc)}
        else:
            c = node.pipeline.counters
            out = {"live": node.live.status(), "frames_in": c.frames_in, "frames_encoded": c.frames_encoded,
                   "queue_dropped": node.pipeline.encode_q.dropped,
                   "recorder_dropped": node.recorder.health()["dropped_packets"],
                   "camera_ready": node.live.tap.stream is not None}
        print(json.dumps(out), flush=True)
    stop.set()
    th.join(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
