"""Reading the node in its VM the way an operator would: a root shell in the guest, and the
heartbeats the station receives, waited for until one says what a test expects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.system.nodevm import NODE_ID
from tests.system.powercut import STORE

CONFIG = "/etc/camnode/node.toml"


def sh(node: Any, command: str, timeout: float = 120) -> str:
    """Run ``command`` as root in the guest; its output (a non-zero exit fails the test)."""
    code, out = node.vm.sh(command, timeout)
    assert code == 0, f"{command!r} exited {code}: {out}"
    return out


def main_pid(node: Any) -> int:
    return int(sh(node, "systemctl show camnode -p MainPID --value"))


def heartbeat(node: Any, pred: Callable[[dict], bool], *, after: float | None = None,
              timeout: float, what: str = "") -> tuple[float, dict]:
    """The first heartbeat arriving after ``after`` (default now) for which ``pred`` holds:
    (arrival on the host's monotonic clock, payload). Fails with the last heartbeat seen."""
    after = time.monotonic() if after is None else after
    deadline = time.monotonic() + timeout
    last: dict = {}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no heartbeat {what or 'matching'} within {timeout:.0f} s; last: "
                                 f"faults={last.get('faults')} recorder={last.get('recorder')}")
        t, hb = node.station.wait("heartbeat", after=after, timeout=max(1.0, left))
        if pred(hb):
            return t, hb
        after, last = t, hb


def heartbeats_between(node: Any, t0: float, t1: float) -> list[tuple[float, dict]]:
    """Every heartbeat the station received in ``(t0, t1]`` (arrival times on the host)."""
    topic = f"camnode/{NODE_ID}/heartbeat"
    with node.station.cond:
        got = [(t, p) for t, tp, p in node.station.messages if tp == topic and t0 < t <= t1]
    return [(t, json.loads(p)) for t, p in got]


def events_between(node: Any, t0: float, t1: float) -> list[dict]:
    """The event messages the station received in ``(t0, t1]``."""
    topic = f"camnode/{NODE_ID}/event"
    with node.station.cond:
        return [json.loads(p) for t, tp, p in node.station.messages if tp == topic and t0 < t <= t1]


def recording(hb: dict) -> bool:
    return (hb.get("fps_out") or 0) > 0


def set_config(node: Any, sections: dict[str, dict[str, str]]) -> None:
    """Add ``key = value`` lines under each ``[section]`` of the node's config, then restart the
    node (a clean restart, as a technician would after editing the file)."""
    edits = []
    for section, lines in sections.items():
        body = "\\n".join(f"{k} = {v}" for k, v in lines.items())
        edits.append(f"s/^\\[{section}\\]$/[{section}]\\n{body}/")
    sh(node, f"sed -i '{'; '.join(edits)}' {CONFIG} && systemctl restart camnode", timeout=600)


def closed_segments(node: Any) -> dict[str, str]:
    """{file name: sha256} of every closed segment in the store."""
    out = sh(node, f"cd {STORE} && find . -name '*.mp4' -type f -print0 | xargs -0 -r sha256sum",
             timeout=300)
    res = {}
    for line in out.splitlines():
        digest, path = line.split(maxsplit=1)
        res[path.rsplit("/", 1)[-1]] = digest
    return res
