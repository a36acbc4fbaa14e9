"""Live view (issue 11): glass-to-glass latency, bandwidth, node CPU.

Same-run figures:

* latency — a 32-bit millisecond wall-clock stamp is burned into each captured frame (a band of
  black/white blocks at the bottom of the picture, beside the node's own on-screen clock); the
  viewer reads it back from the decoded picture and subtracts it from its own clock (same
  machine, same clock). Median and p95 over ``--seconds`` (60) for an RTSP client (PyAV,
  through the relay) and for headless Chromium (WebRTC through Janus), main and sub; the
  browser figure is also given as a ratio to the RTSP one;
* bandwidth — bytes an RTSP client receives per second, sub and main, as a ratio of the
  configured bitrates;
* node CPU — the real node process (``camnode run``, 1280x720 at 15 fps, libx264), share of
  one core with live off, sub on, main on; sub and main as a ratio to off.

Run: ``.venv/bin/python bench/bench_live.py [--seconds 60] [--cpu-seconds 20]``
(needs the relay's Debian packages and chromium + chromium-driver: ``make install``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.camera import open_source
from node.app import Node
from node.clock import SystemClock
from node.config import config_from_dict
from node.localbroker import LocalBroker
from station.command import request
from station.connect import Connection
from station.live.credentials import load_secret, node_password
from station.live.relay import Relay

NODE = "bench-pole"
BITS = 32
W, H, FPS = 1280, 720, 15.0


def stamp(y: np.ndarray, ms: int) -> None:
    """Burn ``ms`` (mod 2^32) into the bottom band of a luma plane: 32 blocks, MSB first."""
    h, w = y.shape
    band = y[h - h // 10: h - h // 40]
    bw = w // BITS
    for i in range(BITS):
        band[:, i * bw:(i + 1) * bw] = 235 if (ms >> (BITS - 1 - i)) & 1 else 16


def read_stamp(y: np.ndarray) -> int:
    h, w = y.shape
    row = y[h - h // 10 + (h // 10 - h // 40) // 2]
    bw = w // BITS
    v = 0
    for i in range(BITS):
        v = (v << 1) | int(row[i * bw + bw // 2] > 128)
    return v


class StampedSource:
    """The synthetic street scene with the capture time burned in."""

    def __init__(self) -> None:
        self._src = open_source("synthetic", W, H, FPS, (320, 240), SystemClock())
        self.name, self.width, self.height, self.fps, self.encoded = "stamped", W, H, FPS, False

    def frames(self):
        for f in self._src.frames():
            stamp(f.main[:H], int(time.time() * 1000) & 0xFFFFFFFF)
            yield f

    def close(self) -> None:
        self._src.close()

    def describe(self) -> dict:
        return {"backend": "stamped synthetic"}


def age_ms(ms: int) -> float:
    return ((int(time.time() * 1000) & 0xFFFFFFFF) - ms) % (1 << 32)


def rtsp_latency(url: str, seconds: float) -> list[float]:
    import av

    out: list[float] = []
    with av.open(url, options={"rtsp_transport": "tcp", "fflags": "nobuffer"}, timeout=10) as c:
        st = c.streams.video[0]
        st.thread_type = "SLICE"
        t0 = time.monotonic()
        for frame in c.decode(st):
            y = frame.to_ndarray(format="gray")
            out.append(age_ms(read_stamp(y)))
            if time.monotonic() - t0 > seconds:
                break
    return [x for x in out if x < 10_000][5:]  # the first frames carry the connection's start-up


BROWSER_JS = """
const v = document.getElementById('video'); const bits = BITS;
window.lat = []; const c = document.createElement('canvas');
const g = c.getContext('2d', {willReadFrequently: true});
function tick(now, meta) {
  if (v.videoWidth) {
    c.width = v.videoWidth; c.height = v.videoHeight; g.drawImage(v, 0, 0);
    const h = c.height, w = c.width, bw = Math.floor(w / bits);
    const y = Math.floor(h - h / 10 + (h / 10 - h / 40) / 2);
    const d = g.getImageData(0, y, w, 1).data; let s = 0;
    for (let i = 0; i < bits; i++) {
      const x = i * bw + Math.floor(bw / 2);
      s = s * 2 + ((d[4 * x] + d[4 * x + 1] + d[4 * x + 2]) / 3 > 128 ? 1 : 0);
    }
    const ms = Date.now() % 4294967296; window.lat.push((ms - s + 4294967296) % 4294967296);
  }
  v.requestVideoFrameCallback(tick);
}
v.requestVideoFrameCallback(tick);
""".replace("BITS", str(BITS))


def browser_latency(page: str, seconds: float) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        drv.get(page)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not drv.execute_script(
                "return document.getElementById('video').videoWidth"):
            time.sleep(0.2)
        drv.execute_script(BROWSER_JS)
        time.sleep(seconds)
        lat = drv.execute_script("return window.lat")
    finally:
        drv.quit()
    return [x for x in lat if x < 10_000][5:]


def summary(name: str, xs: list[float]) -> float:
    xs = sorted(xs)
    med, p95 = statistics.median(xs), xs[int(0.95 * (len(xs) - 1))]
    print(f"  {name:<22} median {med:6.0f} ms   p95 {p95:6.0f} ms   ({len(xs)} frames)")
    return med


def latency(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp, LocalBroker() as broker:
        tmpd = Path(tmp)
        relay = Relay(tmpd / "station", [NODE], port=0)
        relay.start()
        pw = tmpd / "pw"
        pw.write_text(node_password(load_secret(relay.state_dir), NODE))
        cfg = config_from_dict({
            "node": {"id": NODE}, "camera": {"source": "synthetic", "width": W, "height": H, "fps": FPS},
            "storage": {"path": str(tmpd / "rec")}, "mqtt": {"port": broker.port},
            "live": {"relay": relay.rtsp_base, "password_file": str(pw), "max_minutes": 30}})
        node = Node(cfg, source=StampedSource(), analysis=False)
        stop = threading.Event()
        th = threading.Thread(target=node.run, args=(stop,), name="bench-node")
        th.start()
        try:
            while node.live.tap.stream is None:
                time.sleep(0.1)
            from station.live.session import relay_info

            info = relay_info(relay.state_dir)
            print(f"glass-to-glass latency ({W}x{H} at {FPS:g} fps, loopback; stamp burned in at capture):")
            meds = {}
            for stream in ("main", "sub"):
                node.live.command({"stream": stream, "minutes": 10})
                time.sleep(2)
                lat = rtsp_latency(info.rtsp_url(NODE, stream), seconds)
                meds[f"rtsp {stream}"] = summary(f"RTSP (PyAV) {stream}", lat)
                page = info.browser_url(NODE, stream, time.time() + 900)
                meds[f"browser {stream}"] = summary(f"Chromium/WebRTC {stream}",
                                                    browser_latency(page, seconds))
                node.live.command({"stop": True})
                time.sleep(1)
            for stream in ("main", "sub"):
                ratio = meds[f"browser {stream}"] / meds[f"rtsp {stream}"]
                print(f"  browser / RTSP median, {stream}: {ratio:.2f}")
        finally:
            stop.set()
            th.join(30)
            relay.stop()


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def cpu_and_bandwidth(seconds: float) -> None:
    import av

    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp, LocalBroker() as broker:
        tmpd = Path(tmp)
        relay = Relay(tmpd / "station", [NODE], port=0, browser=False)
        relay.start()
        pw = tmpd / "pw"
        pw.write_text(node_password(load_secret(relay.state_dir), NODE))
        conf = tmpd / "node.toml"
        conf.write_text(f'[node]\nid = "{NODE}"\n[camera]\nsource = "synthetic"\nwidth = {W}\nheight = {H}\n'
                        f'fps = {FPS}\n[storage]\npath = "{tmpd / "rec"}"\n[mqtt]\nport = {broker.port}\n'
                        f'[detect]\nenabled = false\n'
                        f'[live]\nrelay = "{relay.rtsp_base}"\npassword_file = "{pw}"\n')
        proc = subprocess.Popen([sys.executable, "-m", "node", "run", "--config", str(conf)],
                                stdout=(tmpd / "node.log").open("wb"), stderr=subprocess.STDOUT)
        conn = Connection("127.0.0.1", broker.port)
        from station.live.session import relay_info

        info = relay_info(relay.state_dir)
        try:
            for _ in range(60):  # until the node listens (a command sent earlier is lost)
                try:
                    request(conn, NODE, "live", {"stop": True}, timeout_s=1)
                    break
                except Exception:
                    if proc.poll() is not None:
                        raise RuntimeError((tmpd / "node.log").read_text()[-2000:]) from None
            time.sleep(3)
            cpu: dict[str, float] = {}
            rate: dict[str, float] = {}
            for mode in ("off", "sub", "main"):
                reader = None
                got = [0]
                if mode != "off":
                    reply = request(conn, NODE, "live", {"stream": mode, "minutes": 10}, timeout_s=10)
                    assert reply["ok"], (reply, (tmpd / "node.log").read_text()[-2000:])
                    time.sleep(3)

                    def read(url: str, got: list[int]) -> None:
                        with av.open(url, options={"rtsp_transport": "tcp"}, timeout=10) as c:
                            t0 = time.monotonic()
                            for pkt in c.demux(video=0):
                                got[0] += pkt.size
                                if time.monotonic() - t0 > seconds:
                                    break

                    reader = threading.Thread(target=read, args=(info.rtsp_url(NODE, mode), got),
                                              name="bench-reader")
                    reader.start()
                    time.sleep(2)
                    got[0] = 0
                c0, t0 = cpu_of(proc.pid), time.monotonic()
                time.sleep(seconds - 3)
                cpu[mode] = (cpu_of(proc.pid) - c0) / (time.monotonic() - t0)
                rate[mode] = got[0] * 8 / 1000 / (time.monotonic() - t0)
                if reader is not None:
                    reader.join(30)
                    request(conn, NODE, "live", {"stop": True}, timeout_s=10)
                    time.sleep(2)
            print(f"node CPU ({W}x{H} at {FPS:g} fps, libx264; share of one core):")
            for mode in ("off", "sub", "main"):
                share = cpu[mode] / cpu["off"]
                print(f"  live {mode:<4}  {cpu[mode] * 100:5.1f} %   ratio to off {share:.2f}")
            print("bandwidth received by an RTSP client:")
            sub = rate["sub"]
            print(f"  sub   {sub:7.0f} kbit/s   ratio to its 250 kbit/s target {sub / 250:.2f}")
            print(f"  main  {rate['main']:7.0f} kbit/s   ratio to the recording's 1200 kbit/s "
                  f"{rate['main'] / 1200:.2f}")
        finally:
            proc.terminate()
            proc.wait(30)
            relay.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--cpu-seconds", type=float, default=20.0)
    a = ap.parse_args()
    cpu_and_bandwidth(a.cpu_seconds)
    latency(a.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
