"""Cheap readings of the node's own state for heartbeats and diagnostics.

Each reader costs one or two small file reads; none spawns a process. Temperatures and
throttling come from the platform probe (:mod:`hw.platform`).
"""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path


def disk_free_mb(path: str | Path) -> float:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return round(shutil.disk_usage(p).free / 1e6, 1)


def cpu_load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def memory(proc_root: str = "/proc") -> dict[str, float]:
    out = {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        with open(f"{proc_root}/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
        with open(f"{proc_root}/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    out["available_mb"] = round(int(line.split()[1]) / 1024, 1)
                    break
    except OSError:
        pass
    return out
