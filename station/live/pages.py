"""The player page's little web server: ``live.html``, ``config.js`` and the two Debian
JavaScript libraries it loads (``janus.js``, ``adapter.js``). Static files only: the video
itself flows from Janus to the browser over WebRTC.
Thread: ``live-pages`` (http.server's serve_forever); each request on a ``live-pages-request``
thread (daemon: a browser that keeps a connection open never holds up ``stop``).
"""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATIC = Path(__file__).with_name("static")
LIBS = {
    "janus.js": Path("/usr/share/javascript/janus-gateway/janus.js"),
    "adapter.js": Path("/usr/share/javascript/webrtc-adapter/adapter.js"),
}


class _Handler(SimpleHTTPRequestHandler):
    config_js = b""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        name = self.path.split("?", 1)[0].lstrip("/")
        if name == "config.js":
            return self._send(self.config_js, "text/javascript")
        path = LIBS.get(name) or (STATIC / name if name == "live.html" else None)
        if path is None or not path.is_file():
            self.send_error(404)
            return None
        kind = "text/html" if name.endswith(".html") else "text/javascript"
        return self._send(path.read_bytes(), kind)

    def _send(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class _NamedThreadingHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` whose per-request threads carry a name (every thread named)."""

    daemon_threads = True
    block_on_close = False  # daemon request threads are not tracked nor joined at close

    def process_request(self, request, client_address) -> None:
        threading.Thread(target=self.process_request_thread, args=(request, client_address),
                         name="live-pages-request", daemon=True).start()


class PageServer:
    def __init__(self, listen: str, port: int, janus_port: int) -> None:
        handler = type("Handler", (_Handler,), {
            "config_js": f"window.LIVE = {{ janusPort: {janus_port} }};\n".encode()})
        self.httpd = _NamedThreadingHTTPServer((listen, port), partial(handler))
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="live-pages", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
