"""The rig of the live tests: a broker, the station's relay (RTSP + Janus + page), a node."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from node.localbroker import LocalBroker
from station.command import NoReply, request
from station.connect import Connection
from station.live.credentials import load_secret, node_password
from station.live.relay import Relay
from tests.nodeproc import NodeProcess, write_config

REPO = Path(__file__).resolve().parents[2]
NODE = "pole-7"


def make_rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    state = tmp / "station"
    broker = LocalBroker().start()
    relay = Relay(state, [NODE], port=0)
    relay.start()
    pw_file = tmp / "stream-password"
    pw_file.write_text(node_password(load_secret(state), NODE))
    pw_file.chmod(0o600)
    storage = tmp / "rec"
    cfg = write_config(tmp / "node.toml", port=broker.port, storage=storage, node_id=NODE, segment_s=2.0,
                       heartbeat_s=0.5,
                       extra=(f'\n[live]\nrelay = "{relay.rtsp_base}"\npassword_file = "{pw_file}"\n'
                              "sub_width = 160\nsub_height = 96\nsub_fps = 5.0\nmax_minutes = 30\n"))
    # a bigger main picture than the default test node, so the sub-stream is a real downscale
    text = cfg.read_text().replace("width = 320\nheight = 240", "width = 480\nheight = 272")
    cfg.write_text(text)
    node = NodeProcess(cfg, tmp / "node.log")
    env = {**os.environ, "CAMNODE_STATION_DIR": str(state)}
    yield {"broker": broker, "relay": relay, "node": node, "storage": storage, "env": env, "tmp": tmp}
    node.signal(15)
    node.close()
    relay.stop()
    broker.cleanup()


def cli_live(rig, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "station.cli", "live", NODE, "--host", "127.0.0.1",
         "--port", str(rig["broker"].port), *args], cwd=REPO, env=rig["env"], capture_output=True,
        text=True, timeout=90)



def ask(rig, payload: dict, timeout_s: float = 15) -> dict:
    return request(Connection("127.0.0.1", rig["broker"].port), NODE, "live", payload, timeout_s=timeout_s)


def wait_node_ready(rig) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # a stop while nothing runs: proves the node listens (an early command is lost)
            if ask(rig, {"stop": True}, timeout_s=2)["ok"]:
                return
        except NoReply:
            pass
    raise AssertionError(rig["node"].log())
