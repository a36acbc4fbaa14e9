"""The node's own RTSP server, as any IP camera has: a VMS on the LAN or VPN pulls
``rtsp://<user>:<password>@<node>:<port>/<node id>/main`` straight from the pole.

It is the same GStreamer RTSP server the station uses as its relay (:mod:`hw.rtsp_server`,
run by the system Python), bound to ``live.serve_address:serve_port``: the node pushes its main
stream (the recorded packets, through :class:`~node.live.manager.LiveTap`) into it over
loopback with a random password made at each start, and readers need the node's own viewer
credentials (``live.serve_username`` / ``serve_password_file``). No data cap applies (LAN) and
nothing is encoded twice. :meth:`step` restarts the server or the push when either ended.
Thread: ``start``/``step``/``stop`` on the main thread; the push has its own thread.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
from pathlib import Path
from typing import Any

from hw.rtsp_server import free_udp_base, spawn
from node.live.push import RtspPush

log = logging.getLogger(__name__)


class LocalRtspServer:
    def __init__(self, cfg: Any, node_id: str, tap: Any) -> None:
        self.cfg, self.node_id, self.tap = cfg, node_id, tap
        self._proc: subprocess.Popen | None = None
        self._push: RtspPush | None = None
        self._secret = ""
        self.port = 0
        self.error = ""
        self.restarts = 0

    def _spawn(self) -> None:
        c = self.cfg
        viewer_pw = Path(c.serve_password_file).read_text().strip()
        self._secret = secrets.token_hex(16)
        conf = {"listen": c.serve_address, "port": c.serve_port,
                "viewers": {c.serve_username: viewer_pw},
                "streams": [{"node": self.node_id, "stream": "main", "password": self._secret,
                             "udp": [p := free_udp_base(4), p + 2]}]}
        try:
            self._proc, self.port = spawn(conf, 15, ready_thread="rtsp-ready")
        except OSError as exc:
            raise OSError(f"the node's RTSP server did not start: {exc}") from exc
        log.info("RTSP server listening on %s:%d (/%s/main)", c.serve_address, self.port, self.node_id)

    def _start_push(self) -> None:
        info = self.tap.stream
        if info is None:
            return  # the camera is not delivering yet: the next step tries again
        url = f"rtsp://{self.node_id}:{self._secret}@127.0.0.1:{self.port}/push/{self.node_id}/main"
        push = RtspPush(url, "local-main", info.width, info.height, info.fps, on_bytes=lambda n: None,
                        on_end=lambda p, why: log.info("local RTSP push ended: %s", why),
                        timeout_s=self.cfg.timeout_s)
        push.start()
        self._push = push
        self.tap.local = push

    def step(self) -> None:
        """Main loop: keep the server and the push running; a failure is recorded, retried."""
        try:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    self.restarts += 1
                    self._stop_push()
                self._proc = None
                self._spawn()
            if self._push is None or not self._push.alive():
                self._stop_push()
                self._start_push()
            self.error = ""
        except (OSError, ValueError) as exc:
            if str(exc) != self.error:
                log.error("the node's RTSP server: %s", exc)
            self.error = str(exc)

    def _stop_push(self) -> None:
        push, self._push = self._push, None
        if push is not None:
            if self.tap.local is push:
                self.tap.local = None
            push.stop("RTSP server stopping")
            push.join(10)

    def stop(self) -> None:
        self._stop_push()
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def status(self) -> dict[str, Any]:
        alive = self._proc is not None and self._proc.poll() is None
        out: dict[str, Any] = {"port": self.port, "running": alive,
                               "pushing": self._push is not None and self._push.alive()}
        if self.error:
            out["error"] = self.error
        return out
