"""The node's own RTSP server (as any IP camera): a VMS with the node's viewer credentials reads
the main stream — the recorded packets — straight from the pole; without them it gets nothing."""

from __future__ import annotations

import time

import av
import pytest

from node.localbroker import LocalBroker, free_port
from tests.live.media import recorded_slices, slices
from tests.nodeproc import NodeProcess, write_config


def test_a_vms_pulls_the_main_stream_from_the_node_with_its_credentials(tmp_path):
    port = free_port()
    pw = tmp_path / "viewer-password"
    pw.write_text("vms-secret-1-long-enough")
    pw.chmod(0o600)
    with LocalBroker() as broker:
        cfg = write_config(tmp_path / "node.toml", port=broker.port, storage=tmp_path / "rec",
                           node_id="pole-8",
                           extra=(f'\n[live]\nserve_port = {port}\nserve_address = "127.0.0.1"\n'
                                  f'serve_password_file = "{pw}"\n'))
        node = NodeProcess(cfg, tmp_path / "node.log")
        try:
            url = f"rtsp://viewer:vms-secret-1-long-enough@127.0.0.1:{port}/pole-8/main"
            got: list[bytes] = []
            deadline = time.monotonic() + 40
            while not got and time.monotonic() < deadline:
                try:
                    opts = {"rtsp_transport": "tcp", "timeout": "5000000"}
                    with av.open(url, options=opts, timeout=10) as c:
                        assert (c.streams.video[0].width, c.streams.video[0].height) == (320, 240)
                        for pkt in c.demux(video=0):
                            if pkt.size and (pic := slices(bytes(pkt))):  # not parameter sets alone
                                got.append(pic)
                            if len(got) >= 20:
                                break
                except av.error.FFmpegError:
                    time.sleep(0.5)
            assert len(got) >= 20, node.log()[-3000:]
            for bad in (f"rtsp://127.0.0.1:{port}/pole-8/main",
                        f"rtsp://viewer:wrong@127.0.0.1:{port}/pole-8/main"):
                with pytest.raises(av.error.FFmpegError):
                    av.open(bad, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=10)
        finally:
            node.signal(15)
            node.close()
    recorded = recorded_slices(tmp_path / "rec")
    start = recorded.index(got[0])
    assert recorded[start:start + len(got)] == got
