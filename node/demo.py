"""``camnode demo`` (``make run``): the whole system on one machine, until Ctrl-C.

Starts a private mosquitto on a free loopback port, the node (a subprocess, exactly as
systemd would run it) on the built-in street scene, and the station's watch view in this
process, printing heartbeats and events. Ctrl-C (or SIGTERM) stops the node cleanly (last
segment closed, ``offline`` published), then the broker.
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
                source: str = "synthetic") -> str:
    text = (
        '[node]\nid = "demo-node"\nname = "Demo street, pole 1"\n\n'
        f'[camera]\nsource = "{source}"\n\n'
        f'[storage]\npath = "{Path(storage).resolve()}"\nsegment_s = 10.0\n\n'
        '# the demo keeps one day of footage (a pole node keeps 30)\n[record]\nmax_age_days = 1.0\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nheartbeat_s = {heartbeat_s}\n'
    )
    models = Path(model_dir).resolve() if model_dir else None
    if models is not None and (models / MODEL).is_file() and (models / LABELS).is_file():
        text += f'\n[detect]\nmodel = "{models / MODEL}"\nlabels = "{models / LABELS}"\n'
    else:  # no model beside the repository: say so in the config rather than fail the check
        text += "\n[detect]\nenabled = false\n"
    return text


def run_demo(storage: str = "var/demo", heartbeat_s: float = 3.0, model_dir: str = "",
             source: str = "synthetic") -> int:
    from station.watch import Watcher

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LocalBroker() as broker, tempfile.TemporaryDirectory(prefix="camnode-demo-") as tmp:
        cfg = Path(tmp) / "node.toml"
        cfg.write_text(demo_config(broker.port, storage, heartbeat_s, model_dir, source))
        Path(storage).mkdir(parents=True, exist_ok=True)
        log_path = Path(storage).resolve() / "node.log"
        print(f"demo: broker on 127.0.0.1:{broker.port}; footage in {Path(storage).resolve()}; "
              f"node log in {log_path}; Ctrl-C to stop", flush=True)
        log_file = log_path.open("ab")
        node = subprocess.Popen([sys.executable, "-m", "node", "run", "--config", str(cfg)],
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        watcher = Watcher("127.0.0.1", broker.port, "camnode", out=sys.stdout)
        watcher.start()
        try:
            while not stop.wait(0.5):
                if node.poll() is not None:
                    print(f"demo: node exited with code {node.returncode}", flush=True)
                    break
        finally:
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
                try:
                    node.wait(20)
                except subprocess.TimeoutExpired:
                    node.kill()
            stop.wait(0.5)  # let the watcher print the final offline status
            watcher.stop()
            log_file.close()
    return 0
