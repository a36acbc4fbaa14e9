"""Live view end to end: real mosquitto, the real relay (GStreamer's RTSP server), the real
node process, ``camnode-station live`` and PyAV as the RTSP client."""

from __future__ import annotations

import itertools
import json
import time

import av
import pytest

from tests.live.media import recorded_slices, slices
from tests.live.rig import NODE, ask, cli_live, wait_node_ready
from tests.stationproc import wait_until


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
    assert lines[1].startswith("http://") and "#token=" in lines[1]
    pkts = read_packets(lines[0], 4.0)
    got = [pic for p in pkts if (pic := slices(bytes(p)))]  # a relay may send parameter sets alone
    assert len(got) >= 20, len(got)
    assert ask(rig, {"stop": True})["ok"]
    # the recorder closes the segments holding that span (2 s segments)
    wait_until(lambda: got[-1] in recorded_slices(rig["storage"]), 30, 1.0)
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
