"""Live sessions of one node: start, extend, expire, stop; the heartbeat's live state.

    cmd/live ──► LiveManager.command ──► RtspPush (main: packets from the recorder's FanOut,
                                                   sub:  SubStream encoder ► packets)
    main loop ──► step(now): expiry, ended pushes joined, usage written

The only hooks into recording are :class:`LiveTap` (one more ``Output`` on the encoder's
FanOut: it forwards packets while a main session runs, else returns at once) and
:meth:`LiveManager.offer_frame` (called on the encoder thread after the on-screen text; it
only puts the frame in a two-slot drop-oldest queue while a sub session runs). Neither can
block or fail the recorder.
Thread: ``command`` on the MQTT thread, ``step``/``status`` on the main thread, hooks on the
encoder thread, ends reported from push threads; one lock guards the session table.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hw.camera.base import Frame
from hw.encode.base import EncodedPacket, StreamInfo
from node.link import topics as t
from node.link.router import CommandError
from node.live.push import RtspPush
from node.live.request import Start, parse, refusal
from node.live.substream import SubStream
from node.live.usage import DataUsage

log = logging.getLogger(__name__)


class LiveTap:
    """An ``Output`` on the encoder's FanOut: the recorded packets, to the main-stream pushes
    (a station session's ``push``, the node's own RTSP server's ``local``)."""

    def __init__(self) -> None:
        self.stream: StreamInfo | None = None
        self.push: RtspPush | None = None
        self.local: RtspPush | None = None

    def start(self, stream: StreamInfo) -> None:
        self.stream = stream

    def write(self, packet: EncodedPacket) -> None:
        push, local = self.push, self.local
        if push is not None:
            push.offer(packet)
        if local is not None:
            local.offer(packet)

    def stop(self) -> None:
        self.stream = None


@dataclass
class Session:
    stream: str
    push: RtspPush
    deadline: float
    until_utc: Any
    sub: SubStream | None = None


class LiveManager:
    def __init__(self, cfg: Any, node_id: str, clock: Any, usage: DataUsage, *,
                 encoder_candidates: list[str] | None = None) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.clock = clock
        self.usage = usage
        self.tap = LiveTap()
        self._candidates = encoder_candidates
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._ended: list[Session] = []
        self.last_end: dict[str, str] = {}
        self.sessions_started = 0
        self.pixels = True  # False when the camera hands neither main pixels nor a lores YUV image
        self.local = None
        if cfg.serve_port:
            from node.live.local_server import LocalRtspServer

            self.local = LocalRtspServer(cfg, node_id, self.tap)

    # -- configuration -------------------------------------------------------------
    @property
    def configured(self) -> bool:
        return bool(self.cfg.relay)

    def _password(self) -> str:
        if self.cfg.password_file:
            try:
                return Path(self.cfg.password_file).read_text().strip()
            except OSError as exc:
                raise CommandError(f"stream password file unreadable: {exc.strerror}") from None
        return self.cfg.password

    def push_url(self, stream: str) -> str:
        user = self.cfg.username or self.node_id
        base = self.cfg.relay.rstrip("/")
        scheme, rest = base.split("://", 1) if "://" in base else ("rtsp", base)
        cred = f"{quote(user, safe='')}:{quote(self._password(), safe='')}@"
        return f"{scheme}://{cred}{rest}/push/{self.node_id}/{stream}"

    # -- cmd/live ------------------------------------------------------------------
    def command(self, args: dict[str, Any]) -> dict[str, Any]:
        req = parse(args, self.cfg.max_minutes)
        if not isinstance(req, Start):
            stopped = self.stop_all("stopped on request")
            return {"stopped": stopped}
        now = self.clock.monotonic()
        until = self.clock.utc() + timedelta(minutes=req.minutes)
        with self._lock:
            cur = self._sessions.get(req.stream)
            if cur is not None and req.stream == "sub" and cur.push.alive():
                cur.deadline, cur.until_utc = now + req.minutes * 60, until
                return self._describe(cur, extended=True)
            why = refusal(req, configured=self.configured, month_bytes=self.usage.month_bytes(),
                          cap_bytes=int(self.cfg.monthly_cap_mb * 1e6),
                          active={s: "" for s, x in self._sessions.items() if x.push.alive()},
                          has_pixels=self.pixels)
            if why:
                raise CommandError(why)
            if req.stream == "main" and self.tap.stream is None:
                raise CommandError("the camera is not delivering yet; ask again in a few seconds")
            session = self._start(req.stream, now + req.minutes * 60, until)
            self._sessions[req.stream] = session
            self.sessions_started += 1
            return self._describe(session, extended=False)

    def _start(self, stream: str, deadline: float, until: Any) -> Session:
        c = self.cfg
        if stream == "main":
            info = self.tap.stream
            assert info is not None
            w, h, fps = info.width, info.height, info.fps
        else:
            w, h, fps = c.sub_width, c.sub_height, c.sub_fps
        push = RtspPush(self.push_url(stream), stream, w, h, fps, on_bytes=self.usage.add,
                        on_end=self._ended_push, timeout_s=c.timeout_s)
        session = Session(stream, push, deadline, until)
        push.start()
        if stream == "main":
            self.tap.push = push
        else:
            session.sub = SubStream(w, h, fps, c.sub_bitrate_kbps, c.sub_gop_s, push.offer,
                                    candidates=self._candidates)
            session.sub.start()
        log.info("live %s started until %s", stream, t.iso(until))
        return session

    def _describe(self, s: Session, *, extended: bool) -> dict[str, Any]:
        return {"stream": s.stream, "path": f"/{self.node_id}/{s.stream}", "until": t.iso(s.until_utc),
                "width": s.push.width, "height": s.push.height, "fps": s.push.fps, "extended": extended}

    # -- hooks ---------------------------------------------------------------------
    def offer_frame(self, frame: Frame) -> None:
        """Encoder thread, after the on-screen text: feed a running sub-stream (else nothing)."""
        s = self._sessions.get("sub")
        if s is not None and s.sub is not None:
            s.sub.offer(frame)

    def _ended_push(self, push: RtspPush, reason: str) -> None:
        """A push thread ended (time up, stop, link cut, refused): detach it from the hooks."""
        s: Session | None = None
        with self._lock:
            cur = self._sessions.get(push.stream)
            if cur is not None and cur.push is push:
                s = self._sessions.pop(push.stream)
                self._ended.append(s)
            if self.tap.push is push:
                self.tap.push = None
            self.last_end[push.stream] = reason
        if s is not None and s.sub is not None:
            s.sub.close()  # the encoder thread ends; joined in step()
        log.info("live %s ended: %s (%d bytes)", push.stream, reason, push.sent_bytes)

    # -- main loop -----------------------------------------------------------------
    def step(self, now: float) -> None:
        """Main thread: end sessions whose time is up; join finished threads."""
        with self._lock:
            due = [s for s in self._sessions.values() if now >= s.deadline]
        for s in due:
            s.push.stop("time is up")
        with self._lock:
            running = list(self._sessions.values())
        for s in running:
            s.push.check_link()  # a push blocked on a dead link is cut from here
        self._reap(0.0)
        if self.local is not None:
            self.local.step()

    def _reap(self, timeout: float) -> None:
        with self._lock:
            ended, self._ended = self._ended, []
        keep = []
        for s in ended:
            if s.sub is not None:
                s.sub.stop(timeout)
            if not s.push.join(timeout):
                keep.append(s)
        with self._lock:
            self._ended.extend(keep)

    def stop_all(self, reason: str, timeout: float = 0.0) -> list[str]:
        with self._lock:
            running = list(self._sessions.values())
        for s in running:
            s.push.stop(reason)
        if timeout:
            for s in running:
                s.push.join(timeout)
            self._reap(timeout)
        return [s.stream for s in running]

    def close(self, timeout: float = 10.0) -> None:
        self.stop_all("node stopping", timeout)
        if self.local is not None:
            self.local.stop()
        self.usage.flush()

    def threads_alive(self) -> int:
        with self._lock:
            ss = list(self._sessions.values()) + list(self._ended)
        return sum(s.push.alive() for s in ss)

    def status(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        with self._lock:
            sessions = {s.stream: {"remaining_s": round(max(0.0, s.deadline - now), 1),
                                   "sent_bytes": s.push.sent_bytes, "dropped": s.push.dropped}
                        for s in self._sessions.values()}
        state = "+".join(k for k in ("main", "sub") if k in sessions) or "off"
        out: dict[str, Any] = {"state": state, "sessions": sessions, **self.usage.snapshot(),
                               "cap_mb": self.cfg.monthly_cap_mb}
        if self.last_end:
            out["last_end"] = dict(self.last_end)
        if self.local is not None:
            out["rtsp_server"] = self.local.status()
        return out
