"""``camnode-demo`` (``make run``): the whole system on one machine, until Ctrl-C.

Starts a private mosquitto on a free loopback port, the node (a subprocess, exactly as
systemd would run it) on the built-in street scene, and the station's watch view in this
process, printing heartbeats and events, and the web console (``station.console.demo``).
Ctrl-C (or SIGTERM) stops the node cleanly (last segment closed, ``offline`` published),
then the console and the broker.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from node.localbroker import LocalBroker

MODEL = "ssd_mobilenet_v1_coco_quant.tflite"
LABELS = "coco_labels.txt"


def demo_config(port: int, storage: str, heartbeat_s: float, model_dir: str = "",
                source: str = "synthetic", live: str = "") -> str:
    if Path(source).is_file():
        source = str(Path(source).resolve())
    fps = _file_fps(source)
    text = (
        '[node]\nid = "demo-node"\nname = "Demo street, pole 1"\n\n'
        f'[camera]\nsource = "{source}"\n' + (f"fps = {fps}\n" if fps else "") + "\n"
        f'[storage]\npath = "{Path(storage).resolve()}"\nsegment_s = 10.0\n\n'
        '# the demo keeps one day of footage (a pole node keeps 30)\n[record]\nmax_age_days = 1.0\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nheartbeat_s = {heartbeat_s}\n'
    )
    text += live
    models = Path(model_dir).resolve() if model_dir else None
    if models is not None and (models / MODEL).is_file() and (models / LABELS).is_file():
        text += f'\n[detect]\nmodel = "{models / MODEL}"\nlabels = "{models / LABELS}"\n'
    else:  # no model beside the repository: say so in the config rather than fail the check
        text += "\n[detect]\nenabled = false\n"
    return text


def _start_relay(tmp: Path):
    """The station's media relay for live view (``camnode-station live demo-node ...``); the
    demo runs without it (and says so) where GStreamer's RTSP server or Janus is missing."""
    from station.live.credentials import load_secret, node_password, station_dir
    from station.live.relay import Relay, RelayError

    state = station_dir()
    relay = Relay(state, ["demo-node"], port=0)
    try:
        base = relay.start()
    except (RelayError, OSError) as exc:
        print(f"demo: live view off ({exc})", flush=True)
        return None, ""
    pw = tmp / "stream-password"
    pw.write_text(node_password(load_secret(state), "demo-node"))
    pw.chmod(0o600)
    print(f"demo: media relay at {base} (RTSP) and {relay.web_base} (browser); try "
          "`camnode-station live demo-node --port <broker port> --url`", flush=True)
    return relay, f'\n[live]\nrelay = "{base}"\npassword_file = "{pw}"\n'
def _file_fps(source: str) -> float | None:
    """A video file plays at its own rate (the camera default would speed it up)."""
    if not Path(source).is_file():
        return None
    import av

    try:
        with av.open(source) as c:
            rate = c.streams.video[0].average_rate
    except (av.error.FFmpegError, IndexError, OSError):
        return None
    return round(float(rate), 3) if rate else None


def run_demo(storage: str = "var/demo", heartbeat_s: float = 3.0, model_dir: str = "",
             source: str = "synthetic", console_listen: str = "127.0.0.1:8080") -> int:
    """0 after Ctrl-C; 1 with a one-line reason on stderr when the node or the station side ended
    by itself or the console could not start."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LocalBroker() as broker, tempfile.TemporaryDirectory(prefix="camnode-demo-") as tmp:
        relay, live = _start_relay(Path(tmp))
        try:
            return _run_with_relay(relay, live, broker, Path(tmp), stop, storage, heartbeat_s, model_dir,
                                   source, console_listen)
        finally:  # whatever fails after the relay started, its processes never outlive the demo
            if relay is not None:
                relay.stop()


def _run_with_relay(relay, live: str, broker, tmp: Path, stop: threading.Event, storage: str,
                    heartbeat_s: float, model_dir: str, source: str, console_listen: str) -> int:
    """The demo proper, its relay already running (stopped by the caller, whatever happens)."""
    from station.watch import HEARTBEAT_LEGEND, Watcher

    cfg = tmp / "node.toml"
    cfg.write_text(demo_config(broker.port, storage, heartbeat_s, model_dir, source, live))
    Path(storage).mkdir(parents=True, exist_ok=True)
    log_path = Path(storage).resolve() / "node.log"
    print(f"demo: broker on 127.0.0.1:{broker.port}; footage in {Path(storage).resolve()}; "
          f"node log in {log_path}; Ctrl-C to stop", flush=True)
    log_file = log_path.open("ab")
    node = subprocess.Popen([sys.executable, "-m", "node", "run", "--config", str(cfg)],
                            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    snapshots = Path(storage).resolve() / "snapshots"
    print(f"demo: source {source}; person snapshots saved in {snapshots}\n"
          f"legend: {HEARTBEAT_LEGEND}", flush=True)
    watcher = Watcher("127.0.0.1", broker.port, "camnode", out=sys.stdout,
                      snapshot_dir=snapshots)
    watcher.start()
    from station.console.demo import DemoError, last_line
    from station.console.demo import start as start_console

    console = None
    failed = ""
    try:
        console = start_console(broker.port, Path(storage), listen=console_listen,
                                live_url=relay.page_template() if relay is not None else "",
                                station_dir=str(relay.state_dir) if relay is not None else "")
    except DemoError as exc:
        failed = str(exc)
    try:
        while not failed and not stop.wait(0.5):
            if node.poll() is not None:
                failed = f"node exited with code {node.returncode}: {last_line(log_path) or 'no output'}"
            elif console is not None and (dead := console.dead()):
                failed = dead
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(20)
            except subprocess.TimeoutExpired:
                node.kill()
        stop.wait(0.5)  # let the watcher print the final offline status
        watcher.stop()
        if console is not None:
            console.terminate()
            console.wait(10)
        log_file.close()
    if failed:
        print(f"camnode-demo: {failed}", file=sys.stderr, flush=True)
        return 1
    return 0
