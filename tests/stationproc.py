"""Run the real ``camnode-station serve`` as a subprocess for integration tests."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class ServeProcess:
    def __init__(self, port: int, db: str, log_path: Path, *extra: str,
                 client_id: str = "station-test", env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--db", db, "--client-id", client_id, *extra],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self._offset = log_path.stat().st_size if log_path.exists() else 0

    def wait_log(self, text: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return True
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited ({self.proc.returncode}): {self.log()[-2000:]}")
            time.sleep(0.05)
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def final_stats(self) -> dict:
        """What the stopped service said it did (its last ``stopped:`` line): ``archived``
        per kind, ``duplicates`` (messages it had archived already: redeliveries, merged once)
        and ``refused`` per reason."""
        import ast
        import re

        found = re.findall(r"stopped: archived (\{.*?\}) duplicates (\d+) refused (\{.*?\})", self.log())
        assert found, f"no 'stopped:' line in the service's log: {self.log()[-1500:]}"
        archived, duplicates, refused = found[-1]
        return {"archived": ast.literal_eval(archived), "duplicates": int(duplicates),
                "refused": ast.literal_eval(refused)}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return int(self.proc.returncode)


def events_cli(db: str, *args: str) -> list[dict]:
    """``camnode-station events --db URL --json``, as the independent checks call it."""
    out = subprocess.run([sys.executable, "-m", "station.cli", "events", "--db", db, "--json",
                          "--limit", "100000", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"events failed: {out.stderr.strip()}")
    return [json.loads(line) for line in out.stdout.splitlines()]


def outbox_rows(storage: Path) -> list[tuple[str, bytes]]:
    """What a node's durable outbox holds now (read-only, beside a running node)."""
    path = storage / "outbox.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [(r[0], bytes(r[1])) for r in db.execute("SELECT topic, payload FROM outbox ORDER BY id")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def wait_until(pred, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
