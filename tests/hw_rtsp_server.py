"""A loopback RTSP server for tests: serves an MP4's H.264 as an IP camera would, unchanged.

Run by the *system* Python (``/usr/bin/python3``), which has the GObject bindings of Debian's
gst-rtsp-server (packages ``python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good
gstreamer1.0-plugins-bad gstreamer1.0-rtsp``); a venv does not. Usage::

    /usr/bin/python3 tests/hw_rtsp_server.py FILE.mp4 [PORT] [--shared] [--sdp-only] [--user NAME]

Prints ``READY rtsp://127.0.0.1:PORT/cam`` on stdout once listening (PORT 0 picks a free
one), then serves until killed or stdin closes. The pipeline demuxes and re-packetises the
file's H.264 without decoding (``h264parse`` only adds SPS/PPS before each IDR), so the slices
a client receives are the file's slices, byte for byte. Each client gets its own playback
from the start, at real time, once; ``--shared`` makes clients share one playback.
``--user NAME``: the camera asks for a login (RTSP basic authentication): NAME, and the
password given as the first line on stdin, as a camera whose factory password was changed.
"""

from __future__ import annotations

import sys
import threading


def main(argv: list[str]) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    path = argv[1]
    user = argv[argv.index("--user") + 1] if "--user" in argv else ""
    password = sys.stdin.readline().strip() if user else ""
    port = int(argv[2]) if len(argv) > 2 and argv[2].isdigit() else 0
    shared = "--shared" in argv
    # --sdp-only: SPS/PPS travel only in the SDP (sprop-parameter-sets), as some cameras do.
    interval = 0 if "--sdp-only" in argv else -1
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{path}" ! qtdemux ! h264parse config-interval={interval} '
        "! rtph264pay name=pay0 pt=96 )")
    factory.set_shared(shared)
    if user:  # a login for this camera: nobody else may see or start the stream
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from hw.rtsp_server import _permissions

        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "owner")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        factory.set_permissions(_permissions("owner", GstRtspServer))
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("FAILED to attach the RTSP server", flush=True)
        return 1
    loop = GLib.MainLoop()

    def watch_stdin() -> None:  # the parent test closing our stdin ends us too
        try:
            sys.stdin.read()
        finally:
            GLib.idle_add(loop.quit)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}/cam", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
