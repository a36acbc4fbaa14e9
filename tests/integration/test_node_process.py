"""The node as installed: a real process, a real mosquitto, real H.264 files."""

from __future__ import annotations

import signal
import time

import av
import pytest

from node.link.topics import HEARTBEAT_FIELDS
from node.localbroker import LocalBroker, free_port
from tests.nodeproc import NodeProcess, write_config


def segments(root) -> list:
    """Closed segment files, whatever container the recorder chose."""
    return sorted(p for p in root.rglob("*") if p.suffix in (".ts", ".mp4"))


def decode_all(path) -> int:
    """Decode every frame; also check that no muxed packet failed to decode."""
    with av.open(str(path)) as c:
        packets = sum(1 for p in c.demux(video=0) if p.size)
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == packets, f"{path.name}: {packets} packets but {frames} frames decoded"
    return frames


@pytest.fixture
def node_factory(tmp_path):
    procs: list[NodeProcess] = []

    def start(port: int, **kw) -> NodeProcess:
        cfg = write_config(tmp_path / f"node{len(procs)}.toml", port=port, storage=tmp_path / "rec", **kw)
        p = NodeProcess(cfg, tmp_path / f"node{len(procs)}.log")
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.close()


def test_node_heartbeats_and_records_then_clean_stop(broker, subscriber_factory, node_factory, tmp_path):
    node = node_factory(broker.port)
    live = subscriber_factory(broker.host, broker.port, "camnode/#")
    # two heartbeats once the encoder is chosen (probing the hardware candidates first takes
    # a moment; a heartbeat before it rightly says encoder null)
    assert live.wait_for(lambda s: sum(h["encoder"] is not None for h in s.json("/heartbeat")) >= 2,
                         30), node.log()
    beats = live.json("/heartbeat")
    for hb in beats:
        missing = [f for f in HEARTBEAT_FIELDS if f not in hb]
        assert not missing, missing
        assert hb["node_id"] == "pole-7"
        assert hb["encoder"] in ("libx264", None)
        assert hb["utc"].endswith("Z")
    assert [hb["encoder"] for hb in beats if hb["encoder"]][-1] == "libx264"
    assert max(b["fps_in"] for b in beats) > 2  # 10 fps source; loose for a loaded machine
    # a subscriber arriving later gets the retained "online"
    late = subscriber_factory(broker.host, broker.port, "camnode/pole-7/status")
    assert late.wait_for(lambda s: s.messages, 5)
    _topic, payload, retained = late.messages[0]
    assert retained and b'"online"' in payload
    assert live.wait_for(lambda s: segments(tmp_path / "rec"), 20), node.log()

    assert node.signal(signal.SIGTERM) == 0, node.log()
    assert live.wait_for(lambda s: s.json("/status")[-1]["state"] == "offline", 10)
    assert live.json("/status")[-1]["reason"] == "shutdown"
    segs = segments(tmp_path / "rec")
    assert len(segs) >= 2
    assert not list((tmp_path / "rec").rglob("*.part")), "last segment left in progress"
    counts = [decode_all(seg) for seg in segs]
    assert all(n >= 10 for n in counts[:-1]), counts  # 10 fps, 1 s GOP, 2 s segments
    assert counts[-1] >= 1  # the segment cut short by SIGTERM is closed and whole


def test_sigkill_fires_last_will(broker, subscriber_factory, node_factory):
    node = node_factory(broker.port)
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-7/status")
    assert live.wait_for(lambda s: any(m["state"] == "online" for m in s.json("/status")), 20), node.log()
    node.signal(signal.SIGKILL)
    # keepalive is 5 s, but a killed process's socket closes at once: the will comes quickly
    assert live.wait_for(lambda s: s.json("/status")[-1]["state"] == "offline", 15)
    assert live.json("/status")[-1]["reason"] == "lost"


def test_broker_down_at_start_then_up(node_factory, subscriber_factory, tmp_path):
    port = free_port()
    node = node_factory(port)
    # recording goes on with no broker at all
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not segments(tmp_path / "rec"):
        time.sleep(0.2)
    assert segments(tmp_path / "rec"), node.log()
    with LocalBroker(port) as b:
        live = subscriber_factory(b.host, b.port, "camnode/#")
        assert live.wait_for(lambda s: len(s.json("/heartbeat")) >= 2, 30), node.log()
        hb = live.json("/heartbeat")[-1]
        assert hb["uptime_s"] >= 2
        assert hb["recorder"]["segments_closed"] >= 1
        assert node.signal(signal.SIGTERM) == 0


def test_model_path_relative_to_the_config_file(broker, subscriber_factory, tmp_path, shared_dir):
    """Under systemd the working directory is /: a relative model path must follow the config."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "models").symlink_to(shared_dir / "models")
    extra = ('\n[detect]\nmodel = "models/ssd_mobilenet_v1_coco_quant.tflite"\n'
             'labels = "models/coco_labels.txt"\n')
    cfg = write_config(tmp_path / "etc" / "node.toml", port=broker.port, storage=tmp_path / "rec",
                       extra=extra)
    node = NodeProcess(cfg, tmp_path / "node.log")
    try:
        live = subscriber_factory(broker.host, broker.port, "camnode/pole-7/heartbeat")
        assert live.wait_for(lambda s: len(s.json("heartbeat")) >= 1, 30), node.log()
        det = live.json("heartbeat")[-1]["vision"]["detect"]
        assert det["enabled"] is True and det["reason"] is None, det
    finally:
        node.close()


def test_events_open_at_a_power_cut_are_ended_at_the_next_start(broker, subscriber_factory, node_factory,
                                                                station_factory):
    """Issue 8/23: SIGKILL (a power cut) with an event open; the restarted node ends it."""
    station_factory(broker.port)  # the archive acknowledges: a delivered end is not sent again
    node = node_factory(broker.port)
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-7/event")

    def started(s) -> list[dict]:
        return [e for e in s.json("event") if e["phase"] == "start"]

    assert live.wait_for(lambda s: started(s), 30), node.log()  # the walker enters at 3 s
    node.signal(signal.SIGKILL)
    first = started(live)[0]
    ends = [e for e in live.json("event") if e["phase"] == "end" and e["id"] == first["id"]]
    assert not ends, "the event ended before the cut: the test proves nothing"
    again = node_factory(broker.port)  # same storage: same record of open events
    assert live.wait_for(lambda s: any(e["phase"] == "end" and e["id"] == first["id"]
                                       for e in s.json("event")), 30), again.log()
    end = next(e for e in live.json("event") if e["phase"] == "end" and e["id"] == first["id"])
    assert end["end_reason"] == "interrupted"
    assert end["start"] == first["start"] and end["end"] >= first["start"]
    assert again.signal(signal.SIGTERM) == 0
    # closed once: a third start finds nothing left open
    third = node_factory(broker.port)
    deadline = time.monotonic() + 30
    while "connected to broker" not in third.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert third.signal(signal.SIGTERM) == 0, third.log()
    # closed once: one interrupted end (the outbox may deliver that same message again until the
    # archive acknowledges it — at least once, idempotent by id+phase — but never a second close)
    closes = {(e["id"], e["end"]) for e in live.json("event") if e.get("end_reason") == "interrupted"}
    assert closes == {(first["id"], end["end"])}
