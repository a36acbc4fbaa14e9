"""End to end on real footage: camera (a real clip) → node → model → MQTT event + snapshot JPEG,
and the event's footage protected and marked in the recording index."""

from __future__ import annotations

import sqlite3
import threading

from node.app import Node
from node.config import config_from_dict


def test_person_walks_in_and_the_station_gets_event_snapshot_and_protected_clip(
        tmp_path, broker, subscriber_factory, shared_dir):
    clip = shared_dir / "media/videos/one-by-one-person-detection.mp4"  # first person at 6.2 s
    models = shared_dir / "models"
    cfg = config_from_dict({
        "node": {"id": "pole-3"},
        "camera": {"source": str(clip), "width": 768, "height": 432, "fps": 10.0,
                   "lores_width": 320, "lores_height": 180, "loop": False},
        "encoder": {"gop_s": 1.0, "bitrate_kbps": 600},
        "storage": {"path": str(tmp_path / "rec"), "segment_s": 2.0},
        "detect": {"model": str(models / "ssd_mobilenet_v1_coco_quant.tflite"),
                   "labels": str(models / "coco_labels.txt"), "threads": 2},
        "mqtt": {"port": broker.port, "heartbeat_s": 1.0},
    })
    live = subscriber_factory(broker.host, broker.port, "camnode/pole-3/#")
    node = Node(cfg)
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        def person_started(s) -> bool:
            return any(e.get("label") == "person" and e["phase"] == "start" for e in s.json("/event"))

        assert live.wait_for(person_started, 30), live.json("/event")
        event = next(e for e in live.json("/event") if e.get("label") == "person")
        assert live.wait_for(
            lambda s: any(t.endswith(f"/snapshot/{event['id']}") for t, _, _ in s.messages), 10)
        hb = live.json("/heartbeat")[-1]
        assert hb["vision"]["detect"]["enabled"] is True
    finally:
        stop.set()
        th.join(30)
    jpeg = next(p for t, p, _ in live.messages if t.endswith(f"/snapshot/{event['id']}"))
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) > 5000
    assert 0 <= event["box"][0] < event["box"][2] <= 1
    # the node stopped mid-visit: the event was ended cleanly ("shutdown") and its footage kept
    assert live.wait_for(lambda s: any(e["id"] == event["id"] and e["phase"] == "end"
                                       for e in s.json("/event")), 10)  # (sent as the node stopped)
    ends = [e for e in live.json("/event") if e["id"] == event["id"] and e["phase"] == "end"]
    assert ends and ends[0]["end_reason"] == "shutdown"
    # appearance attributes computed on the node (issue 10): named colours and sides of the frame
    sides = {"left", "right", "top", "bottom", "inside"}
    app = ends[0]["appearance"]
    assert set(app["colours"]) == {"upper", "lower"}, app
    assert app["entry"] in sides and app["exit"] in sides
    db = sqlite3.connect(tmp_path / "rec" / "index.db")
    flagged = db.execute("SELECT count(*) FROM segments WHERE person = 1 AND protected = 1").fetchone()[0]
    assert flagged >= 1
    assert any(event["id"] in str(r) for r in db.execute("SELECT * FROM events").fetchall())
