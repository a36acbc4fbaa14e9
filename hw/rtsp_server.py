"""An RTSP relay for camera poles: GStreamer's RTSP server, configured. The station runs it as
its media relay (``station.live.relay``); a node runs it as its own RTSP server for a VMS on
the LAN (``node.live.local_server``). Both start it with :func:`spawn`; it sits in ``hw`` (the
vendor-library seam) so that neither side imports the other.

Run by the *system* Python (the GObject bindings of Debian's ``gir1.2-gst-rtsp-server-1.0``
live there, not in a venv)::

    /usr/bin/python3 hw/rtsp_server.py < CONFIG.json

The configuration arrives on stdin (it holds credentials: never on the command line) as JSON::

    {"listen": "127.0.0.1", "port": 8554,
     "viewers": {"station": "secret"},                 # may read every pole
     "streams": [{"node": "pole-7", "stream": "sub", "password": "node secret",
                  "udp": [40000, 40002]}]}

For each stream two mount points exist:

* ``/push/<node>/<stream>`` accepts the node's ``ANNOUNCE``/``RECORD`` (RTSP RECORD mode,
  TCP-interleaved, so it works from behind a carrier's NAT), only with that node's credentials.
  Its pipeline only depayloads and re-payloads the H.264 (no decoding): the access units go on
  as RTP to each local UDP port in ``udp``.
* ``/<node>/<stream>`` plays it to RTSP clients (a VMS, the tests) from the first of those
  ports, shared by all clients, only with a viewer's credentials. The other ports feed the
  WebRTC gateway (Janus) for browsers.

Prints ``READY rtsp://HOST:PORT`` once listening; ends when stdin closes or on SIGTERM.
Nothing here touches a pixel: it is wiring of GStreamer elements.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"  # the one with Debian's GObject bindings (python3-gi)
SCRIPT = Path(__file__).resolve()
RTP_CAPS = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96"


def free_udp_base(count: int, start: int = 40000, stop: int = 60000) -> int:
    """A base port with ``count`` consecutive loopback UDP ports free (a best effort: another
    program may take one before the relay binds it; the relay then fails and is restarted)."""
    import random
    import socket

    for _ in range(200):
        base = random.randrange(start, stop - count, 2)
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError("no free loopback UDP ports for the RTSP server")


def spawn(conf: dict, timeout: float, wrap: Sequence[str] = (),
          ready_thread: str = "rtsp-ready") -> tuple[subprocess.Popen, int]:
    """Start this program under the system Python, hand it ``conf`` on stdin and wait up to
    ``timeout`` s for ``READY``: the running process and the port it bound. ``wrap`` prefixes the
    command (tests: a network namespace). Raises OSError naming the reason when it did not start
    (the process is then reaped)."""
    if not Path(SYSTEM_PYTHON).exists():
        raise OSError(f"{SYSTEM_PYTHON} not found (Debian's python3-gi is needed)")
    proc = subprocess.Popen([*wrap, SYSTEM_PYTHON, str(SCRIPT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(conf) + "\n")
    proc.stdin.flush()
    line = readline(proc, timeout, ready_thread)
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise OSError(line.strip() or "no answer")
    return proc, int(line.split()[1].rsplit(":", 1)[1])


def readline(proc: subprocess.Popen, timeout: float, thread_name: str) -> str:
    """First line of ``proc``'s stdout, or '' after ``timeout`` (read on a named helper thread)."""
    out: list[str] = []
    th = threading.Thread(target=lambda: out.append(proc.stdout.readline()), name=thread_name,
                          daemon=True)
    th.start()
    th.join(timeout)
    t0 = time.monotonic()
    while th.is_alive() and time.monotonic() - t0 < 0.1:
        th.join(0.05)
    return out[0] if out else ""


def _permissions(role: str, GstRtspServer):
    """Only ``role`` may see (access) and start (construct) a mount point."""
    perms = GstRtspServer.RTSPPermissions()
    perms.add_permission_for_role(role, "media.factory.access", True)
    perms.add_permission_for_role(role, "media.factory.construct", True)
    return perms


def build_server(cfg: dict, GstRtsp, GstRtspServer):
    server = GstRtspServer.RTSPServer()
    server.set_address(cfg.get("listen", "127.0.0.1"))
    server.set_service(str(cfg.get("port", 0)))
    # One thread per client: with the default single thread, a viewer's DESCRIBE waiting for
    # the first frame would block the very thread that reads the node's pushed RTP: deadlock.
    server.get_thread_pool().set_max_threads(-1)
    auth = GstRtspServer.RTSPAuth()

    def add_user(user: str, password: str, role: str) -> None:
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", role)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)

    for user, password in cfg.get("viewers", {}).items():
        add_user(user, password, "viewer")
    mounts = server.get_mount_points()
    added_nodes: set[str] = set()
    for st in cfg.get("streams", []):
        node, stream, ports = st["node"], st["stream"], st["udp"]
        if node not in added_nodes:
            add_user(node, st["password"], f"node:{node}")
            added_nodes.add(node)
        clients = ",".join(f"127.0.0.1:{p}" for p in ports)
        push = GstRtspServer.RTSPMediaFactory()
        push.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        push.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        push.set_launch(
            "( rtph264depay name=depay0 ! h264parse config-interval=-1 "
            "! rtph264pay pt=96 config-interval=-1 mtu=1400 "
            f"! multiudpsink clients={clients} sync=false async=false )")
        push.set_permissions(_permissions(f"node:{node}", GstRtspServer))
        mounts.add_factory(f"/push/{node}/{stream}", push)
        play = GstRtspServer.RTSPMediaFactory()
        play.set_shared(True)
        play.set_launch(
            f'( udpsrc port={ports[0]} address=127.0.0.1 caps="{RTP_CAPS}" '
            "! rtph264depay ! rtph264pay name=pay0 pt=96 mtu=1400 )")
        play.set_permissions(_permissions("viewer", GstRtspServer))
        mounts.add_factory(f"/{node}/{stream}", play)
    server.set_auth(auth)
    return server


def main() -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    cfg = json.loads(sys.stdin.readline())
    Gst.init(None)
    server = build_server(cfg, GstRtsp, GstRtspServer)
    if server.attach(None) == 0:
        print("FAILED to listen on the RTSP port", flush=True)
        return 1
    loop = GLib.MainLoop()

    def watch_stdin() -> None:  # the supervisor closing our stdin ends us
        try:
            sys.stdin.read()
        finally:
            GLib.idle_add(loop.quit)

    threading.Thread(target=watch_stdin, name="relay-stdin", daemon=True).start()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    # the clean-up pool drops sessions of clients that vanished (a cut link)
    GLib.timeout_add_seconds(2, lambda: (server.get_session_pool().cleanup(), True)[1])
    print(f"READY rtsp://{cfg.get('listen', '127.0.0.1')}:{server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
