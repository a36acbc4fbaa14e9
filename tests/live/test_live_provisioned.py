"""A node provisioned for live view (``camnode-provision node --relay … --live-secret …``) pushes
its sub-stream into the real relay with the password provisioning derived, and a reader gets
frames; the relay takes its publisher accounts from the ward registry (``--ward``). The same
node provisioned against another station's secret is refused by the relay.

The node runs in-process on its provisioned node.toml, its ``/etc/camnode`` files read where
provisioning wrote them (the names ``image``/firstboot install them under); only the camera
(synthetic), the GPIO (mock), the storage and the picture size are this machine's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from node.app import Node
from node.config import Config, load_config
from node.localbroker import free_port
from provisioning.cli import main as provision
from station.live.credentials import VIEWER, load_secret, viewer_password
from station.live.relay import Relay
from station.live.roster import live_nodes
from tests.stationproc import wait_until

NODE = "pole-7"


def provisioned(out: Path, broker_port: int, relay: str, secret_file: Path) -> Path:
    assert provision(["node", "--id", NODE, "--broker", f"127.0.0.1:{broker_port}", "--no-tls",
                      "--out", str(out), "--source", "synthetic", "--no-detect", "--wiring", "none",
                      "--relay", relay, "--live-secret", str(secret_file)]) == 0
    assert provision(["check", str(out / NODE)]) == 0
    return out / NODE


def as_installed(node_dir: Path, tmp: Path) -> Config:
    """The node's config as it runs on the pole, its /etc/camnode files found in ``node_dir``."""
    cfg = load_config(node_dir / "node.toml")

    def etc(path: str) -> str:
        assert path.startswith("/etc/camnode/"), path
        return str(node_dir / Path(path).name)

    lv = cfg.live
    assert (lv.relay, lv.username, lv.password_file) != ("", "", "")
    return cfg.replace(
        mqtt=dataclasses.replace(cfg.mqtt, password_file=etc(cfg.mqtt.password_file), heartbeat_s=0.3,
                                 reconnect_max_s=1.0),
        record=dataclasses.replace(cfg.record, signing_key=etc(cfg.record.signing_key)),
        live=dataclasses.replace(lv, password_file=etc(lv.password_file), sub_width=160, sub_height=96,
                                 sub_fps=5.0, timeout_s=3.0),
        storage=dataclasses.replace(cfg.storage, path=str(tmp / "rec"), segment_s=2.0),
        camera=dataclasses.replace(cfg.camera, width=320, height=240, fps=10.0, lores_width=160,
                                   lores_height=120),
        gpio=dataclasses.replace(cfg.gpio, factory="mock"),
    )


class Running:
    def __init__(self, cfg: Config) -> None:
        self.node = Node(cfg, analysis=False)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.node.run, args=(self.stop,), name="test-node")

    def __enter__(self) -> Node:
        self.thread.start()
        assert wait_until(lambda: self.node.live.tap.stream is not None, 20.0, 0.1)
        return self.node

    def __exit__(self, *exc) -> None:
        self.node.live.command({"stop": True})
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def read_frames(url: str, want: int = 10) -> set[tuple[int, int]]:
    sizes: set[tuple[int, int]] = set()
    frames = 0
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=10) as c:
        for pkt in c.demux(video=0):
            for f in pkt.decode():
                sizes.add((f.width, f.height))
                frames += 1
            if frames >= want:
                break
    assert frames >= want
    return sizes


@pytest.fixture
def relay(tmp_path):
    """The station's real relay on a port chosen before provisioning (the node's --relay)."""
    port = free_port()
    state = tmp_path / "station"
    load_secret(state)  # the station's live-secret, 0600, as the relay makes it at first start
    ward = tmp_path / "ward"
    made: list[Relay] = []

    def start() -> Relay:
        r = Relay(state, live_nodes(ward / "ward.json"), port=port, browser=False)
        r.start()
        made.append(r)
        return r

    yield {"port": port, "state": state, "ward": ward, "start": start}
    for r in made:
        r.stop()


def test_provisioned_node_pushes_into_the_relay_and_a_wrong_secret_is_refused(tmp_path, broker, relay):
    url = f"rtsp://127.0.0.1:{relay['port']}"
    good = provisioned(relay["ward"], broker.port, url, relay["state"] / "live-secret")
    r = relay["start"]()  # its publisher accounts: the ward's live nodes
    assert r.nodes == [NODE]
    viewer = f"rtsp://{VIEWER}:{viewer_password(load_secret(relay['state']))}@127.0.0.1:{relay['port']}"

    with Running(as_installed(good, tmp_path / "good")) as node:
        reply = node.live.command({"stream": "sub", "minutes": 1})
        assert (reply["width"], reply["height"]) == (160, 96), reply
        assert read_frames(f"{viewer}/{NODE}/sub") == {(160, 96)}
        assert node.live.usage.snapshot()["bytes_today"] > 0
        assert "sub" not in node.live.last_end, node.live.last_end

    # the same node id provisioned by another station (another secret): the relay refuses its push
    other_state = tmp_path / "other-station"
    load_secret(other_state)
    bad = provisioned(tmp_path / "other-ward", broker.port, url, other_state / "live-secret")
    assert (bad / "live.password").read_bytes() != (good / "live.password").read_bytes()
    with Running(as_installed(bad, tmp_path / "bad")) as node:
        before = node.live.usage.snapshot()["bytes_today"]
        node.live.command({"stream": "sub", "minutes": 1})
        assert wait_until(lambda: "sub" in node.live.last_end, 20.0, 0.1), node.live.status()
        reason = node.live.last_end["sub"]
        assert "push ended" in reason and ("401" in reason or "Unauthorized" in reason), reason
        assert node.live.usage.snapshot()["bytes_today"] == before  # nothing went through
        with pytest.raises(av.error.FFmpegError):  # nothing plays: no publisher got in
            read_frames(f"{viewer}/{NODE}/sub")


def push_answer(base: str, node_dir: Path) -> str:
    """A short RTSP RECORD of a few libx264 frames with the node's provisioned credentials:
    "ok" when the relay took them, else its refusal (a node it does not know has no mount)."""
    import numpy as np

    node_id = node_dir.name
    password = (node_dir / "live.password").read_text().strip()
    url = base.replace("rtsp://", f"rtsp://{node_id}:{password}@") + f"/push/{node_id}/sub"
    try:
        opts = {"rtsp_transport": "tcp", "timeout": "5000000"}
        with av.open(url, mode="w", format="rtsp", options=opts) as c:
            st = c.add_stream("libx264", rate=10)
            st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
            for i in range(10):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
                for pkt in st.encode(frame):
                    c.mux(pkt)
            for pkt in st.encode():
                c.mux(pkt)
    except av.error.HTTPUnauthorizedError:
        return "401"
    except av.error.HTTPNotFoundError:
        return "404"
    return "ok"


@contextlib.contextmanager
def relay_cli(relay: dict) -> Iterator[subprocess.Popen]:
    """``camnode-station relay --ward`` on the fixture's station folder, ward and RTSP port (the
    browser side on: Janus and the page); killed at the end if the test did not stop it."""
    env = {**os.environ, "CAMNODE_STATION_DIR": str(relay["state"])}
    proc = subprocess.Popen([sys.executable, "-m", "station.cli", "relay", "--ward",
                             str(relay["ward"] / "ward.json"), "--rtsp-port", str(relay["port"]),
                             "--web-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def started(proc: subprocess.Popen) -> str:
    """The relay's next "relay: RTSP at" line (its children may print before it)."""
    seen = []
    while line := proc.stdout.readline():
        seen.append(line)
        if line.startswith("relay: RTSP at"):
            return line
    raise AssertionError("".join(seen))


def test_relay_reads_the_ward_again_on_sighup(tmp_path, relay):
    """``camnode-station relay --ward``: it starts on a ward without live nodes yet (what the
    unit does before the first one is provisioned), a node provisioned later gets its account on
    SIGHUP, a retired one loses it; the relay stays on its ports."""
    secret = relay["state"] / "live-secret"
    ward = relay["ward"]
    url = f"rtsp://127.0.0.1:{relay['port']}"
    broker_port = free_port()
    assert provision(["node", "--id", NODE, "--broker", f"127.0.0.1:{broker_port}", "--no-tls", "--out",
                      str(ward), "--source", "synthetic", "--no-detect", "--wiring", "none"]) == 0

    def state() -> dict:
        return json.loads((relay["state"] / "relay.json").read_text())

    with relay_cli(relay) as proc:
        assert "for no node yet" in started(proc)
        assert state()["nodes"] == [] and state()["rtsp"] == url
        assert provision(["node", "--id", NODE, "--out", str(ward), "--source", "synthetic", "--no-detect",
                          "--wiring", "none", "--relay", url, "--live-secret", str(secret), "--update"]) == 0
        proc.send_signal(signal.SIGHUP)
        assert started(proc).rstrip().endswith(f"for {NODE}; Ctrl-C to stop")
        assert state()["nodes"] == [NODE] and state()["rtsp"] == url
        assert push_answer(url, ward / NODE) == "ok"
        assert provision(["node", "--id", "pole-8", "--out", str(ward), "--no-detect", "--relay", url,
                          "--live-secret", str(secret)]) == 0
        assert push_answer(url, ward / "pole-8") == "404"  # not yet: the relay read the ward before
        proc.send_signal(signal.SIGHUP)
        assert "for pole-7, pole-8;" in started(proc)
        assert state()["nodes"] == [NODE, "pole-8"] and state()["rtsp"] == url
        assert push_answer(url, ward / "pole-8") == "ok"
        assert provision(["retire", NODE, "--out", str(ward)]) == 0
        proc.send_signal(signal.SIGHUP)
        assert "for pole-8;" in started(proc)
        assert state()["nodes"] == ["pole-8"]
        assert push_answer(url, ward / NODE) == "404"  # a retired node's password no longer gets in
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids |= {int(k) for k in (task / "children").read_text().split()}
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return kids


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited (a zombie only waits for its new parent to reap it)


def test_a_relay_killed_outright_leaves_no_janus_or_rtsp_server_behind(relay):
    """``camnode-station relay`` SIGKILLed outside systemd (no cgroup to clean up after it): its
    Janus (browser side) and its GStreamer RTSP server both exit, and a new relay gets the ports."""
    assert provision(["node", "--id", NODE, "--broker", f"127.0.0.1:{free_port()}", "--no-tls", "--out",
                      str(relay["ward"]), "--source", "synthetic", "--no-detect", "--wiring", "none"]) == 0
    # (a ward to read, no live node in it yet)
    with relay_cli(relay) as proc:
        started(proc)
        kids = _children(proc.pid)

        def names() -> set[bytes]:
            return {Path(f"/proc/{k}/comm").read_bytes().strip() for k in kids}

        # Janus (once setpriv has exec'd it) and the RTSP server (the system python)
        assert len(kids) == 2 and wait_until(lambda: b"janus" in names(), 10), names()
        proc.kill()
        proc.wait(10)
        assert wait_until(lambda: all(_gone(k) for k in kids), 15), {k: _gone(k) for k in kids}
    with relay_cli(relay) as again:
        assert started(again).startswith(f"relay: RTSP at rtsp://127.0.0.1:{relay['port']}")
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0
