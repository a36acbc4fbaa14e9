"""Supervisor of the station's media relay (GStreamer's RTSP server, :mod:`hw.rtsp_server`).

Owned by the station service (or ``camnode-station relay``, or ``make run``): it writes the
relay's configuration (listen address, the viewer account, one publisher account per node,
loopback UDP ports between the relay's pipelines) to the relay's stdin — credentials never
appear on a command line — waits for ``READY``, and restarts the relay with backoff when it
dies. The running relay's public facts go to ``<station dir>/relay.json`` (mode 0600) for
``camnode-station live``.
Neither child outlives the relay, however it ends: the RTSP server exits when its stdin
closes; Janus runs under util-linux's ``setpriv --pdeathsig TERM`` (the kernel sends it SIGTERM
when the thread that started it ends: the caller of ``start``, or the supervisor, which also
starts it again if that caller's thread ends first), so a relay killed with SIGKILL outside
systemd leaves no Janus holding its ports.
Thread: ``start``/``stop`` from the owner; one ``relay-supervisor`` thread watches the process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from hw.rtsp_server import free_udp_base, spawn
from station.live import janus
from station.live.credentials import VIEWER, load_secret, node_password, viewer_password
from station.live.pages import PageServer

log = logging.getLogger(__name__)

STREAMS = ("main", "sub")


class RelayError(RuntimeError):
    pass


def with_parent() -> list[str]:
    """A command prefix that makes the kernel send SIGTERM to the child when its parent thread
    ends (``setpriv`` sets ``PR_SET_PDEATHSIG``, then execs; the setting survives that exec and
    ``ip netns exec``'s). Empty where util-linux's setpriv is missing: the child then outlives a
    SIGKILLed parent, as every child does."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def relay_config(nodes: list[str], secret: bytes, *, listen: str, port: int, udp_base: int) -> dict[str, Any]:
    """The relay's configuration: every node gets a ``main`` and a ``sub`` mount; each stream two
    loopback UDP ports (the RTSP play side, the WebRTC gateway)."""
    streams = []
    port_no = udp_base
    for node in nodes:
        for stream in STREAMS:
            streams.append({"node": node, "stream": stream, "password": node_password(secret, node),
                            "udp": [port_no, port_no + 2]})
            port_no += 4
    return {"listen": listen, "port": port, "viewers": {VIEWER: viewer_password(secret)},
            "streams": streams}


class Relay:
    def __init__(self, state_dir: Path, nodes: list[str], *, listen: str = "127.0.0.1", port: int = 8554,
                 public_host: str = "", udp_base: int = 0, web_port: int = 0, browser: bool = True,
                 wrap: list[str] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.nodes = list(nodes)
        self.listen, self.port = listen, port
        self.public_host = public_host or listen
        self.udp_base = udp_base or free_udp_base(4 * len(STREAMS) * len(self.nodes))
        self.web_port = web_port
        self.browser = browser  # Janus and the player page (off: RTSP only)
        self.wrap = list(wrap or [])  # a command prefix, e.g. ``ip netns exec NS`` in tests
        self._proc: subprocess.Popen | None = None
        self._janus: subprocess.Popen | None = None
        self._pages: PageServer | None = None
        self.janus_port = 0
        self.web_base = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0
        self.rtsp_base = ""

    def config(self) -> dict[str, Any]:
        return relay_config(self.nodes, load_secret(self.state_dir), listen=self.listen, port=self.port,
                            udp_base=self.udp_base)

    def start(self, timeout: float = 15.0) -> str:
        """Start the relay; returns its RTSP base URL (without credentials)."""
        self._spawn(timeout)
        if self.browser:
            try:
                self._start_browser_side()
            except Exception:  # never leave the RTSP server running behind a failed start
                self.stop()
                raise
        self._thread = threading.Thread(target=self._watch, name="relay-supervisor", daemon=True)
        self._thread.start()
        return self.rtsp_base

    def _spawn(self, timeout: float) -> None:
        try:
            self._proc, port = spawn(self.config(), timeout, self.wrap, ready_thread="relay-ready")
        except OSError as exc:
            raise RelayError(f"relay did not start: {exc}") from exc
        self.port = port  # a port of 0 asked for a free one; restarts keep it
        self.rtsp_base = f"rtsp://{self.public_host}:{port}"
        self._write_state()
        log.info("media relay listening at %s", self.rtsp_base)

    def _start_browser_side(self) -> None:
        """Janus (WebRTC to browsers) and the player page."""
        from node.localbroker import free_port

        self.janus_port = self.janus_port or free_port()
        self._pages = self._pages or PageServer(self.listen, self.web_port, self.janus_port)
        self.web_port = self._pages.port
        self._pages.start()
        self.web_base = f"http://{self.public_host}:{self.web_port}"
        self._spawn_janus()
        self._write_state()

    def _spawn_janus(self) -> None:
        folder = self.state_dir / "janus"
        janus.write_config(folder, self.config()["streams"], load_secret(self.state_dir),
                           http_port=self.janus_port, listen=self.listen)
        log_path = self.state_dir / "janus.log"
        with log_path.open("ab") as logf:
            cmd = [*with_parent(), *self.wrap, janus.JANUS, "-F", str(folder),
                   "-C", str(folder / "janus.jcfg")]
            self._janus = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)

    def page_template(self) -> str:
        """The player page with ``{node}``/``{stream}`` placeholders and no key: what the web
        console embeds (``camnode-station console --live-url``). The console reads the station's
        secret from its directory and signs a viewer token for each page it draws for a user
        allowed to watch (no key or token goes on a command line)."""
        return f"{self.web_base}/live.html?node={{node}}&stream={{stream}}"

    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "relay.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"rtsp": self.rtsp_base, "viewer": VIEWER, "nodes": self.nodes,
                       "web": self.web_base}, fh)
        os.replace(tmp, path)

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            proc = self._proc
            if proc is None or proc.poll() is not None:
                if proc is not None:
                    log.error("media relay exited with %s; restarting", proc.returncode)
                try:
                    self._spawn(15.0)
                    self.restarts += 1
                    backoff = 1.0
                except (RelayError, OSError) as exc:
                    log.error("media relay restart failed: %s", exc)
                    if self._stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, 30.0)
                    continue
            if self._janus is not None and self._janus.poll() is not None:
                log.error("janus exited with %s; restarting", self._janus.returncode)
                self._spawn_janus()
                self.restarts += 1
            self._stop.wait(0.5)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pages is not None:
            self._pages.stop()
        if self._janus is not None and self._janus.poll() is None:
            self._janus.terminate()
            try:
                self._janus.wait(timeout)
            except subprocess.TimeoutExpired:
                self._janus.kill()
                self._janus.wait()
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the relay ends when its stdin closes
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        state = self.state_dir / "relay.json"
        try:  # only our own state: another relay may have started since
            if json.loads(state.read_text()).get("rtsp") == self.rtsp_base:
                state.unlink()
        except (OSError, ValueError):
            pass

