"""Live view end to end: real mosquitto, the real relay (GStreamer's RTSP server), the real
node process, ``camnode-station live`` and PyAV as the RTSP client."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from node.localbroker import LocalBroker
from station.console import NoReply, request
from station.live.credentials import load_secret, node_password
from station.live.relay import Relay
from tests.live.media import recorded_slices, slices
from tests.nodeproc import NodeProcess, write_config

REPO = Path(__file__).resolve().parents[2]
NODE = "pole-7"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
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
    return request("127.0.0.1", rig["broker"].port, "camnode", NODE, "live", payload, timeout_s=timeout_s)


def wait_node_ready(rig) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # a stop while nothing runs: proves the node listens (an early command is lost)
            if ask(rig, {"stop": True}, timeout_s=2)["ok"]:
                return
        except NoReply:
            pass
    raise AssertionError(rig["node"].log())


def read_packets(url: str, seconds: float) -> list[av.Packet]:
    out = []
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=10) as c:
        t0 = time.monotonic()
        for pkt in c.demux(video=0):
            if pkt.size:
                out.append(pkt)
            if time.monotonic() - t0 > seconds:
                break
    return out


def test_main_stream_packets_are_the_recorded_packets(rig):
    wait_node_ready(rig)
    res = cli_live(rig, "--stream", "main", "--minutes", "1", "--url")
    assert res.returncode == 0, res.stderr + rig["node"].log()[-3000:]
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("rtsp://") and lines[0].endswith(f"/{NODE}/main")
    # assert lines[1].startswith("http")  # TODO janus
    pkts = read_packets(lines[0], 4.0)
    got = [slices(bytes(p)) for p in pkts]
    assert len(got) >= 20, len(got)
    assert ask(rig, {"stop": True})["ok"]
    time.sleep(5)  # the recorder closes the segments holding that span (2 s segments)
    recorded = recorded_slices(rig["storage"])
    start = recorded.index(got[0])
    assert recorded[start:start + len(got)] == got


def test_sub_stream_decodes_at_its_stated_size_and_rate(rig):
    wait_node_ready(rig)
    res = cli_live(rig, "--stream", "sub", "--minutes", "1", "--url")
    assert res.returncode == 0, res.stderr
    url = res.stdout.splitlines()[0]
    sizes, pts = set(), []
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=10) as c:
        st = c.streams.video[0]
        for pkt in c.demux(st):
            if pkt.pts is None:
                continue
            pts.append(float(pkt.pts * st.time_base))
            sizes.update((f.width, f.height) for f in pkt.decode())
            if len(pts) >= 15:
                break
    assert sizes == {(160, 96)}
    gaps = sorted(b - a for a, b in itertools.pairwise(pts))
    assert gaps[len(gaps) // 2] == pytest.approx(1 / 5.0, abs=0.03)
    assert ask(rig, {"stop": True})["ok"]


def test_bad_requests_get_one_clear_error_each(rig, subscriber_factory):
    wait_node_ready(rig)
    sub = subscriber_factory("127.0.0.1", rig["broker"].port, f"camnode/{NODE}/reply/live")
    cases = [({"stream": "hd"}, "unknown stream"), ({"stream": "sub", "minutes": 0}, "minutes must be"),
             ({"stream": "sub", "minutes": 31}, "minutes must be"), ({"stream": "sub", "minutes": "5"},
                                                                     "minutes must be")]
    for payload, words in cases:
        reply = ask(rig, payload)
        assert reply["ok"] is False and words in reply["error"], reply
    first = ask(rig, {"stream": "main", "minutes": 1})
    assert first["ok"], first
    second = ask(rig, {"stream": "main", "minutes": 1})
    assert second["ok"] is False and "already live" in second["error"]
    assert sub.wait_for(lambda s: len(s.json("reply/live")) == len(cases) + 2)
    assert ask(rig, {"stop": True})["result"]["stopped"] == ["main"]


def test_heartbeat_reports_live_state_and_bytes(rig, subscriber_factory):
    wait_node_ready(rig)
    sub = subscriber_factory("127.0.0.1", rig["broker"].port, f"camnode/{NODE}/heartbeat")
    assert ask(rig, {"stream": "sub", "minutes": 1})["ok"]
    assert sub.wait_for(lambda s: any(h["live"]["state"] == "sub" and h["live"]["bytes_today"] > 0
                                      for h in s.json("heartbeat")), 20)
    ask(rig, {"stop": True})
    assert sub.wait_for(lambda s: s.json("heartbeat")[-1]["live"]["state"] == "off", 20)
    hb = sub.json("heartbeat")[-1]["live"]
    assert hb["bytes_month"] >= hb["bytes_today"] > 0
    assert json.dumps(hb)  # plain JSON
