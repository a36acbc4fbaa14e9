"""A node as provisioned, on a pretend 128 GB and 16 GB card: the budget plans the encoder, the
real libx264 encodes with that plan, and the retention fault appears only where even the
quality floor cannot keep 30 days — with the numbers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hw.camera.synthetic import SyntheticSource
from node.app import Node
from node.config import config_from_dict
from provisioning.node import NodeSpec, node_toml
from provisioning.ward import Ward


def provisioned_config(tmp_path: Path, port: int):
    """The generated config of a provisioned node; only what this machine lacks is replaced
    (no CSI camera, no GPIO, no /var/lib, no provisioned key or password files)."""
    ward = Ward(tmp_path / "ward", {"prefix": "camnode", "broker": {"host": "127.0.0.1", "port": port},
                                    "tls": False, "client_certs": False})
    raw = tomllib.loads(node_toml(NodeSpec("pole-7", "Pole 7"), ward))
    raw["camera"]["source"] = "synthetic"
    raw["gpio"] = {"factory": "none"}  # no GPIO here
    raw["storage"]["path"] = str(tmp_path / "rec")
    raw["record"]["signing_key"] = ""
    raw["mqtt"] = {"host": "127.0.0.1", "port": port}
    return config_from_dict(raw)


def card(size: float, root: Path):
    """Free bytes of a card of ``size`` (as sold) holding the files under ``root``."""
    def free(_path) -> int:
        used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        return int(size * 0.97 - 2e9 - used)
    return free


def run_node(tmp_path: Path, port: int, size: float) -> Node:
    cfg = provisioned_config(tmp_path, port)
    cam = cfg.camera
    assert (cam.width, cam.height, cam.fps) == (1280, 720, 15.0)  # the defaults
    src = SyntheticSource(cam.width, cam.height, cam.fps, (cam.lores_width, cam.lores_height),
                          _clock(), realtime=False, max_frames=45)
    node = Node(cfg, source=src, analysis=False, free_fn=card(size, Path(cfg.storage.path)))
    node.start()
    try:
        assert node.join(120)
        node.budget.tick(force=True)  # the hour's step, now: it sees the measured bytes
    finally:
        node.stop()
    return node


def _clock():
    from node.clock import SystemClock

    return SystemClock()


@pytest.mark.slow
def test_default_node_on_128g_keeps_30_days_without_a_fault(tmp_path, broker) -> None:
    node = run_node(tmp_path, broker.port, 128e9)
    faults = node.diagnostics.faults()
    assert "retention" not in faults, faults
    b = node.budget
    assert b.knob.kind == "crf" and 23 <= b.loop.q_now <= 42
    d = b.decision
    assert d.predicted_bytes_per_day <= d.budget_bytes_per_day
    # ≈ 128 GB x 0.97 - 2 GB over 30 days and an hour: about 4 GB a day
    assert 3.8e9 < d.budget_bytes_per_day < 4.2e9
    # the encoder that ran used the budget's settings: CRF, the cap, the long GOP
    rate = node.pipeline.encoder.rate
    assert rate.crf is not None and rate.maxrate_kbps == b.settings.maxrate_kbps
    assert rate.gop_s == 4.0
    assert node.heartbeat()["budget"]["settings"]["crf"] == b.settings.crf
    assert b.loop.a["day"] != b.loop.prior["day"]  # the meter's bytes reached the model
    assert b.loop.a["night"] == b.loop.prior["night"]  # no night seen yet


@pytest.mark.slow
def test_default_node_on_16g_reports_the_shortfall_with_numbers(tmp_path, broker) -> None:
    node = run_node(tmp_path, broker.port, 16e9)
    fault = node.diagnostics.faults().get("retention", "")
    assert "even the quality floor (crf 42) writes" in fault, fault
    assert "GB/day, over the budget of 0.4" in fault
    assert "the card holds ~" in fault and "of 30 days" in fault
    assert "resolution <= " in fault and "fps <= " in fault and "card)" in fault
    assert node.budget.loop.q_now == 42.0  # it did give up quality first


def test_provisioned_pi_node_gives_picamera2_the_budget_bitrate(tmp_path, broker) -> None:
    """camera.source = "picamera2" (as provisioned): the camera's own encoder is configured
    from the budget (bitrate knob, intra period = the GOP) and the loop steers it there."""
    import dataclasses

    cfg = provisioned_config(tmp_path, broker.port)
    cfg = cfg.replace(camera=dataclasses.replace(cfg.camera, source="picamera2"))
    node = Node(cfg, analysis=False, free_fn=card(128e9, Path(cfg.storage.path)))
    try:
        src = node._open_source()  # builds the source; the library is only needed to stream
        b = node.budget
        assert b is not None and b.knob.kind == "bitrate"
        assert src.bitrate_kbps == b.settings.bitrate_kbps and src.gop_s == 4.0
        assert b.settings.bitrate_kbps < 1200  # not the old fixed default
        assert b.apply_fn == src.set_rate
        again = node._open_source()  # a camera reopened after a fault: same budget, its settings
        assert node.budget is b and again.bitrate_kbps == b.settings.bitrate_kbps
    finally:
        node.stop()
