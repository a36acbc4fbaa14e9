"""One live stream pushed to the station's relay: RTSP ``ANNOUNCE``/``RECORD`` over TCP.

FFmpeg's RTSP muxer (through PyAV) does the protocol; packets go out as they are (no decode,
no re-encode). The session begins at a keyframe (packets before the first IDR are skipped) and
its timestamps start at zero.

``offer`` runs on the producer's thread (the node's encoder thread for the main stream): it
only appends to a bounded queue and never blocks. When the link cannot keep up the queue
fills; the backlog is dropped and sending resumes at the next keyframe, so the picture freezes
instead of the node's memory growing. The push ends by itself when its time is up, on
:meth:`stop`, or when the link is cut: :meth:`check_link` (called after each write and from
the node's main loop) sees the connection unacknowledged, or a write blocked, for
``timeout_s`` and shuts it down (see :mod:`node.live.linkwatch` for why writes alone do not
tell).
Thread: one ``live-push-<stream>`` thread per push.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from urllib.parse import urlsplit

from hw.encode.base import EncodedPacket
from node.live import linkwatch

log = logging.getLogger(__name__)

#: Connections open one at a time, so a new socket to the relay is this push's own.
_CONNECT_LOCK = threading.Lock()

TIME_BASE = Fraction(1, 90_000)


class LinkStalled(OSError):
    """A write to the relay blocked for too long: the link is cut or hopelessly congested."""


class RtspPush:
    def __init__(self, url: str, stream: str, width: int, height: int, fps: float, *,
                 on_bytes: Callable[[int], None], on_end: Callable[[RtspPush, str], None],
                 timeout_s: float = 5.0, max_queue: int = 120) -> None:
        self.url = url  # holds credentials: never logged
        self.stream = stream
        self.width, self.height, self.fps = width, height, fps
        self._on_bytes = on_bytes
        self._on_end = on_end
        self._timeout_s = timeout_s
        self._q: deque[EncodedPacket] = deque()
        self._max = max_queue
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._need_key = True
        self.sent_bytes = 0
        self.sent_packets = 0
        self.dropped = 0
        self.end_reason = ""
        self._fd: int | None = None
        self._mux_since: float | None = None
        self._cut = False
        self._thread = threading.Thread(target=self._run, name=f"live-push-{stream}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, packet: EncodedPacket) -> None:
        """Producer thread: queue a packet; never blocks."""
        with self._cond:
            if self._need_key:
                if not packet.keyframe:
                    return
                self._need_key = False
            if len(self._q) >= self._max:  # the link is behind: drop the backlog, restart at an IDR
                self.dropped += len(self._q)
                self._q.clear()
                self._need_key = not packet.keyframe
                if self._need_key:
                    return
            self._q.append(packet)
            self._cond.notify()

    def stop(self, reason: str = "stopped") -> None:
        if not self.end_reason:
            self.end_reason = reason
        self._stop.set()
        with self._cond:
            self._cond.notify()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def check_link(self) -> bool:
        """Any thread: True while the link carries; on a cut, shut the connection (the push
        thread then ends with the reason)."""
        fd = self._fd
        if fd is None or self._cut:
            return not self._cut
        try:
            stalled = linkwatch.unacked_for(fd)
        except OSError:
            return True  # the socket is already gone: the push thread is ending
        busy = self._mux_since
        if busy is not None:  # a write blocked in the muxer (or its poll for the relay's replies)
            stalled = max(stalled, time.monotonic() - busy)
        if stalled >= self._timeout_s:
            self._cut = True
            log.warning("live %s: link stalled for %.1f s (nothing acknowledged, or a write blocked)",
                        self.stream, stalled)
            linkwatch.shut(fd)
            with self._cond:
                self._cond.notify()
            return False
        return True

    def _connected(self, container, first) -> None:
        """Open the RTSP session (the first mux writes the header) and note its socket."""
        u = urlsplit(self.url)
        host, port = u.hostname or "", u.port or 554
        with _CONNECT_LOCK:
            before = linkwatch.sockets_to(host, port)
            container.mux(first)
            new = linkwatch.sockets_to(host, port) - before
        self._fd = min(new) if new else None
        if self._fd is None:
            log.warning("live %s: the connection to the relay was not found: cuts are seen late", self.stream)

    def _next(self) -> EncodedPacket | None:
        with self._cond:
            while not self._q and not self._stop.is_set():
                self._cond.wait(0.5)
            return self._q.popleft() if self._q and not self._stop.is_set() else None

    def _run(self) -> None:
        import av

        container = None
        reason = ""
        try:
            first = self._next()
            if first is None:
                return
            container = av.open(self.url, mode="w", format="rtsp",
                                options={"rtsp_transport": "tcp",
                                         "timeout": str(int(self._timeout_s * 1e6))})  # µs
            opened = False
            st = container.add_stream("h264", rate=Fraction(self.fps).limit_denominator(1001))
            st.width, st.height = self.width, self.height
            st.time_base = TIME_BASE
            t0 = first.dts
            pkt: EncodedPacket | None = first
            while pkt is not None:
                out = av.Packet(pkt.data)
                out.stream = st
                out.time_base = TIME_BASE
                out.pts, out.dts = pkt.pts - t0, pkt.dts - t0
                out.is_keyframe = pkt.keyframe
                if opened:
                    self._mux_since = time.monotonic()
                    container.mux(out)
                    self._mux_since = None
                else:
                    self._connected(container, out)
                    opened = True
                if self._cut or not self.check_link():
                    raise LinkStalled(f"link to the relay stalled for {self._timeout_s:g} s")
                self.sent_bytes += pkt.size
                self.sent_packets += 1
                self._on_bytes(pkt.size)
                pkt = self._next()
        except Exception as exc:  # av.error.* (refused, auth, reset, timeout) — end cleanly
            reason = f"push ended: {type(exc).__name__}: {exc}".replace(self.url, "<relay>")
            if self._cut and not isinstance(exc, LinkStalled):  # the muxer failed on the socket we shut
                reason = (f"push ended: LinkStalled: link to the relay stalled for {self._timeout_s:g} s "
                          f"({type(exc).__name__})")
            log.warning("live %s %s", self.stream, reason)
        finally:
            if container is not None:
                t = time.monotonic()
                try:
                    container.close()  # TEARDOWN; bounded by the socket timeout
                except Exception as exc:
                    log.info("live %s: closing the push failed after %.1f s: %s", self.stream,
                             time.monotonic() - t, type(exc).__name__)
            if not self.end_reason:
                self.end_reason = reason or "stopped"
            self._on_end(self, self.end_reason)
