"""Run the real ``camnode run`` as a subprocess for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_config(path: Path, *, port: int, storage: Path, node_id: str = "pole-7", extra: str = "",
                 heartbeat_s: float = 0.5, segment_s: float = 2.0) -> Path:
    path.write_text(
        f'[node]\nid = "{node_id}"\n\n'
        '[camera]\nsource = "synthetic"\nwidth = 320\nheight = 240\nfps = 10.0\n'
        'lores_width = 160\nlores_height = 120\n\n'
        '[encoder]\ngop_s = 1.0\nbitrate_kbps = 300\n\n'
        f'[storage]\npath = "{storage}"\nsegment_s = {segment_s}\n\n'
        f'[mqtt]\nport = {port}\nheartbeat_s = {heartbeat_s}\nkeepalive_s = 5\nreconnect_max_s = 1.0\n'
        + extra
        # no model file beside these configs: motion detection only, said explicitly (a missing
        # model is a config error)
        + ("" if "[detect]" in extra else "\n[detect]\nenabled = false\n")
    )
    return path


class NodeProcess:
    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node", "run", "--config", str(config)],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def signal(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if not self._log.closed:
            self._log.close()
