"""A private mosquitto on a free loopback port: for the demo and for tests.

It writes its own config into a temporary directory (listener on 127.0.0.1 only, no
persistence) and can add a password file, an ACL file or a TLS listener when asked. Tests
whose broker must die and come back (outages) use ``stop()``/``start()`` on the same port.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_mosquitto() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if cand and Path(cand).exists():
            return cand
    raise FileNotFoundError("mosquitto not found: install the Debian package 'mosquitto' (make install)")


class LocalBroker:
    def __init__(self, port: int | None = None, *, extra_conf: str = "", workdir: Path | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="camnode-broker-"))
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen | None = None

    @property
    def conf_path(self) -> Path:
        return self.dir / "mosquitto.conf"

    def write_conf(self) -> Path:
        base = self.extra_conf or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        self.conf_path.write_text(
            "persistence false\nuser root\nlog_dest stderr\nlog_type error\nlog_type warning\n" + base
        )
        return self.conf_path

    def start(self, timeout_s: float = 5.0) -> LocalBroker:
        self.write_conf()
        self.proc = subprocess.Popen([find_mosquitto(), "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)  # Ctrl-C reaches the demo, not the broker
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err.strip()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
                return self
            time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
