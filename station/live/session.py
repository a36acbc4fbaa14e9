"""Starting a live session from the station: ask the node (``cmd/live``), then wait until the
relay plays the stream, and hand out the URLs a viewer opens.

The same function serves ``camnode-station live`` and the web console.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from station.live.credentials import load_secret, viewer_password


class LiveError(RuntimeError):
    """The session could not be started; the message says why (one line)."""


#: how long a live session lasts when none is asked for (the node's default, node.live)
DEFAULT_MINUTES = 5.0


@dataclass(frozen=True)
class RelayInfo:
    rtsp: str
    viewer: str
    password: str
    web: str = ""
    secret: bytes = field(default=b"", repr=False)

    def browser_url(self, node: str, stream: str, expires: float) -> str:
        """The player page of one pole's stream (Janus over WebRTC) with a viewer token good
        until ``expires`` (UNIX seconds); the token travels in the fragment, which browsers
        never send to a server."""
        if not self.web:
            return "(no browser gateway running)"
        return page_url(f"{self.web}/live.html?node={quote(node)}&stream={stream}", self.secret, expires)

    def rtsp_url(self, node: str, stream: str) -> str:
        u = urlsplit(self.rtsp)
        return (f"rtsp://{quote(self.viewer, safe='')}:{quote(self.password, safe='')}@{u.netloc}"
                f"/{node}/{stream}")


def relay_info(state_dir: Path) -> RelayInfo:
    path = state_dir / "relay.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LiveError(f"no media relay is running (no {path}): start `make run`, "
                        "`camnode-station serve` or `camnode-station relay`") from None
    except (OSError, ValueError) as exc:
        raise LiveError(f"relay state {path} unreadable: {exc}") from None
    try:
        secret = load_secret(state_dir)
    except (ValueError, OSError) as exc:
        raise LiveError(str(exc)) from None
    return RelayInfo(data["rtsp"], data["viewer"], viewer_password(secret, data["viewer"]),
                     data.get("web", ""), secret)


def page_url(page: str, secret: bytes, expires: float) -> str:
    """``page`` (the relay's player page of one stream) with a viewer token in its fragment."""
    from station.live.janus import viewer_token

    return f"{page}#token={quote(viewer_token(secret, expires), safe='')}"


def token_expiry(minutes: float | None, now: float) -> float:
    """When the token for a live session of ``minutes`` (the node's default when None) ends."""
    from station.live.janus import TOKEN_GRACE_S

    return now + (DEFAULT_MINUTES if minutes is None else minutes) * 60 + TOKEN_GRACE_S


def wait_playable(url: str, timeout_s: float) -> None:
    """Open ``url`` as an RTSP client and read one packet: the stream plays."""
    import av

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with av.open(url, options={"rtsp_transport": "tcp", "timeout": "4000000"}, timeout=5.0) as c:
                for pkt in c.demux(video=0):
                    if pkt.size:
                        return
        except av.error.FFmpegError as exc:
            last = str(exc).replace(url, "<url>")
        time.sleep(0.3)
    raise LiveError(f"the relay did not play the stream within {timeout_s:g} s ({last or 'no data'})")


def start_live(request: Any, node: str, stream: str, minutes: float | None, state_dir: Path, *,
               wait_s: float = 20.0, now: float | None = None) -> tuple[dict[str, Any], str, str]:
    """Ask ``node`` for a live session and wait until it plays; returns the node's reply, the
    RTSP URL (with the viewer's credentials) and the browser page's URL (its token good for the
    session; ``now``: UNIX seconds, the clock's by default).
    ``request(name, payload)`` sends a command and returns the reply (:func:`station.console.request`)."""
    info = relay_info(state_dir)
    payload: dict[str, Any] = {"stream": stream}
    if minutes is not None:
        payload["minutes"] = minutes
    reply = request("live", payload)
    if not reply.get("ok"):
        raise LiveError(f"{node} refused: {reply.get('error', 'no reason given')}")
    url = info.rtsp_url(node, stream)
    wait_playable(url, wait_s)
    expires = token_expiry(minutes, time.time() if now is None else now)
    return reply, url, info.browser_url(node, stream, expires)
