"""The WebRTC side of the relay: Debian's Janus gateway, configured for the poles.

Janus's streaming plugin takes each pole's H.264 as RTP on a loopback port (fed by the RTSP
relay's pipeline, :mod:`hw.rtsp_server`) and plays it to browsers over WebRTC without
decoding. Every request to Janus needs a viewer token (Janus's signed-token mode): the station
signs one per view with a key derived from its secret, good for the streaming plugin until it
expires (the length of the live session asked for, plus a minute) — so a page handed to an
officer stops playing when its session ends, a disabled account gets no new token, and the key
that signs them never leaves the station. Only the streaming plugin and the HTTP transport are
loaded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from station.live.credentials import viewer_password

LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
JANUS = "/usr/bin/janus"
#: the label the token-signing key is derived under (not the old browser key's, which was
#: handed to browsers: anyone holding one must not be able to sign tokens)
TOKEN_LABEL = "janus-token:v1"
OTHER_PLUGINS = ("audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip", "textroom",
                 "videocall", "videoroom", "voicemail")
OTHER_TRANSPORTS = ("websockets", "pfunix", "mqtt", "nanomsg", "rabbitmq")
PLUGIN = "janus.plugin.streaming"
#: added to a token's life beyond the live session it is for (clocks, the page's own start)
TOKEN_GRACE_S = 60


def libdir() -> Path:
    for cand in (LIBDIR, *Path("/usr/lib").glob("*-linux-gnu*/janus")):
        if (cand / "plugins" / "libjanus_streaming.so").exists():
            return cand
    return LIBDIR


def token_key(secret: bytes) -> str:
    """What Janus checks viewer tokens with (``token_auth_secret``), and the mount points' admin
    secret: derived from the station's secret; it stays on the station."""
    return viewer_password(secret, TOKEN_LABEL)


def viewer_token(secret: bytes, expires: float) -> str:
    """A viewer's token in Janus's signed-token format: ``EXPIRY,janus,PLUGIN:SIGNATURE``, the
    signature the base64 HMAC-SHA1 of what precedes it; good for the streaming plugin until
    ``expires`` (UNIX seconds)."""
    data = f"{int(expires)},janus,{PLUGIN}"
    mac = hmac.new(token_key(secret).encode(), data.encode(), hashlib.sha1).digest()
    return f"{data}:{base64.b64encode(mac).decode()}"


def mount_id(node: str, stream: str) -> str:
    return f"{node}-{stream}"


def write_config(folder: Path, streams: list[dict], secret: bytes, *, http_port: int, listen: str) -> None:
    """Janus's three configuration files for ``streams`` (the relay's stream list)."""
    folder.mkdir(parents=True, exist_ok=True)
    lib = libdir()
    key = token_key(secret)
    loopback = listen.startswith("127.")
    (folder / "janus.jcfg").write_text(
        "general: {\n"
        f'  configs_folder = "{folder}"\n  plugins_folder = "{lib}/plugins"\n'
        f'  transports_folder = "{lib}/transports"\n  events_folder = "{lib}/events"\n'
        f'  loggers_folder = "{lib}/loggers"\n  debug_level = 3\n'
        f'  token_auth = true\n  token_auth_secret = "{key}"\n'
        "}\n"
        "media: {\n  rtp_port_range = \"20000-40000\"\n}\n"
        "nat: {\n  nice_debug = false\n" + ('  ice_enforce_list = "lo"\n' if loopback else "") + "}\n"
        "plugins: {\n  disable = \"" + ",".join(f"libjanus_{p}.so" for p in OTHER_PLUGINS) + "\"\n}\n"
        "transports: {\n  disable = \"" + ",".join(f"libjanus_{t}.so" for t in OTHER_TRANSPORTS) + "\"\n}\n"
        "events: {\n  broadcast = false\n}\n")
    (folder / "janus.transport.http.jcfg").write_text(
        "general: {\n  json = \"compact\"\n  base_path = \"/janus\"\n  http = true\n"
        f"  port = {http_port}\n  ip = \"{listen}\"\n  https = false\n}}\n"
        "admin: {\n  admin_http = false\n}\ncors: {\n}\n")
    mounts = ["general: {\n  string_ids = true\n}\n"]
    for n, st in enumerate(streams):
        mid = mount_id(st["node"], st["stream"])
        mounts.append(  # section names are libconfig identifiers: the id is a value
            f'mount{n}: {{\n  type = "rtp"\n  id = "{mid}"\n  description = "{st["node"]} {st["stream"]}"\n'
            f'  video = true\n  videoport = {st["udp"][1]}\n  videoiface = "127.0.0.1"\n  videopt = 96\n'
            '  videocodec = "h264"\n  videofmtp = "profile-level-id=42e01f;packetization-mode=1"\n'
            f'  secret = "{key}"\n}}\n')
    (folder / "janus.plugin.streaming.jcfg").write_text("".join(mounts))
    for f in folder.glob("*.jcfg"):
        f.chmod(0o600)
