"""Evidence from a real node: legal hold, clip over cmd/clip, verification against the key in
the station's inventory (never the manifest's), case folder, audit — and the refusals."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import datetime

from sqlalchemy import select

from node.app import Node
from node.config import config_from_dict
from node.record.export import manifest_digest
from node.record.integrity import Signer, generate_key
from node.record.verify import verify_clip
from station.archive import open_archive
from station.archive.inventory import upsert
from station.archive.query import EventQuery, search_events
from station.archive.schema import commands
from station.cli import main as station_cli
from station.evidence import verify_with_inventory


def node_config(tmp_path, port):
    key = tmp_path / "signing.key"
    public = generate_key(key)
    cfg = config_from_dict({
        "node": {"id": "pole-9"},
        "camera": {"source": "synthetic", "width": 320, "height": 240, "fps": 10.0,
                   "lores_width": 160, "lores_height": 120},
        "encoder": {"gop_s": 1.0, "bitrate_kbps": 300},
        "storage": {"path": str(tmp_path / "rec"), "segment_s": 2.0},
        "record": {"signing_key": str(key)},
        "mqtt": {"port": port, "heartbeat_s": 0.5, "reconnect_max_s": 1.0},
    })
    return cfg, public


def resign(manifest_path, signer: Signer, public_hex: str) -> None:
    """What a forger with another key would do: every signature and the embedded key replaced."""
    m = json.loads(manifest_path.read_text())
    for seg in m["segments"]:
        seg["sig"] = signer.sign(seg["chain"])
    m["public_key"] = public_hex
    m.pop("signature", None)
    m["signature"] = signer.sign(manifest_digest(m).hex())
    manifest_path.write_text(json.dumps(m, indent=2, sort_keys=True))


def test_evidence_case_from_a_real_node(archive_url, broker, tmp_path, station_factory, capsys):
    cfg, public = node_config(tmp_path, broker.port)
    media = tmp_path / "media"
    station_factory(broker.port, archive_url, media=str(media))
    node = Node(cfg)
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    engine = open_archive(archive_url)
    try:
        deadline = time.monotonic() + 60
        ended = []
        while time.monotonic() < deadline and not ended:
            ended = [e for e in search_events(engine, EventQuery()) if e["phase"] == "end"]
            time.sleep(0.3)
        assert ended, "no event archived"
        event = ended[0]
        while time.monotonic() < deadline and node.recorder.health()["segments_closed"] < 6:
            time.sleep(0.2)
        base = ["--db", archive_url, "--media", str(media), "--port", str(broker.port), "--actor", "desk-1",
                "--timeout", "30"]
        # no key in the inventory: the clip is pulled and held but refused, with the reason
        assert station_cli(["evidence", "--event", event["id"], "--window", "2s", "-o",
                            str(tmp_path / "case0"), *base]) == 1
        err = capsys.readouterr().err
        assert "no public key for pole-9 in the station's inventory" in err
        assert list((tmp_path / "case0" / "refused" / "pole-9").glob("*.mp4"))
        assert not (tmp_path / "case0" / "clips" / "pole-9").exists() or \
            not list((tmp_path / "case0" / "clips" / "pole-9").glob("*.mp4"))
        upsert(engine, "pole-9", {"pubkey": public}, datetime(2026, 1, 1))
        case_dir = tmp_path / "case1"
        assert station_cli(["evidence", "--event", event["id"], "--window", "2s", "-o", str(case_dir),
                            *base]) == 0
        assert station_cli(["evidence", "--event", event["id"], "--window", "2s", "-o", str(case_dir),
                            *base]) == 1  # never overwritten
        assert "never overwritten" in capsys.readouterr().err
    finally:
        stop.set()
        th.join(30)
    case = json.loads((case_dir / "case.json").read_text())
    (pole,) = case["poles"]
    assert pole["held"] and pole["verified"] and pole["problems"] == []
    clip = case_dir / pole["clip"]
    manifest = case_dir / pole["manifest"]
    assert clip.stat().st_size > 1000 and manifest.exists()
    page = (case_dir / "index.html").read_text()
    assert event["id"] in page and "verified against the inventory key" in page
    with engine.connect() as conn:
        audit = [r.command for r in conn.execute(select(commands).where(commands.c.actor == "desk-1")
                                                 .order_by(commands.c.id))]
        replies = [r.command for r in conn.execute(select(commands).where(commands.c.actor == ""))]
    # who asked what (both attempts), and the node's replies archived by the service
    assert audit == ["hold", "clip", "evidence"] * 2
    assert "hold" in replies
    # held on the node: the footage of the window is protected from retention
    import sqlite3

    db = sqlite3.connect(tmp_path / "rec" / "index.db")
    assert db.execute("SELECT count(*) FROM segments WHERE protected = 1").fetchone()[0] >= 1

    # a clip altered by one byte: refused, with the reason
    altered = tmp_path / "altered.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0x01
    altered.write_bytes(bytes(data))
    problems = verify_with_inventory(engine, "pole-9", altered, manifest)
    assert problems and "altered" in problems[0], problems
    # a manifest re-signed with a foreign key (and carrying that key): refused, although it is
    # self-consistent — which is exactly why the manifest's key is never trusted
    forged = tmp_path / "forged.json"
    shutil.copyfile(manifest, forged)
    foreign_key = tmp_path / "foreign.key"
    foreign_pub = generate_key(foreign_key)
    resign(forged, Signer.from_file(foreign_key), foreign_pub)
    assert verify_clip(clip, forged).ok  # checked against its own embedded key it "verifies"
    problems = verify_with_inventory(engine, "pole-9", clip, forged)
    assert problems and all("forged" in p for p in problems), problems
    engine.dispose()


def test_case_names_are_the_nodes_hold_names_and_never_shared():
    """A case's legal hold on the node is named for its event; the node replaces a hold of the
    same name, so two events must never share one (a long node id cut off the counter once)."""
    from node.record.holds import _NAME
    from station.evidence import case_name

    long_node = "pole-" + "x" * 40
    ids = ["pole-3-20261130T014414406Z-o2", f"{long_node}-20261130T014414406Z-o123",
           f"{long_node}-20261130T014414406Z-o1234", f"{long_node}-20261130T014414407Z-o123"]
    names = [case_name(i) for i in ids]
    assert names[0] == "case-pole-3-20261130T014414406Z-o2"
    assert len(set(names)) == len(names) and all(_NAME.match(n) and len(n) <= 64 for n in names), names
