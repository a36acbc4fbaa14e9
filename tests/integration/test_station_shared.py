"""Two ``serve`` instances in one shared group (``$share/...``), one killed mid-run: every
event archived exactly once in total, on SQLite and on the PostgreSQL server."""

from __future__ import annotations

import signal
import time

from sqlalchemy import func, select

from station.archive import open_archive
from station.archive.schema import events
from tests.simnode import SimNode
from tests.stationproc import ServeProcess, events_cli, wait_until

NODES, EVENTS = 4, 60


def test_two_shared_instances_one_killed_archive_everything_once(archive_url, broker, tmp_path):
    # in a group a dead member's session keeps receiving its share until it expires: short
    # (default 3 min; 10 s here), and the nodes resend what it swallowed
    share = ("--share-group", "ward", "--session-expiry-h", str(10 / 3600))
    a = ServeProcess(broker.port, archive_url, tmp_path / "a.log", *share, client_id="station-a")
    b = ServeProcess(broker.port, archive_url, tmp_path / "b.log", *share, client_id="station-b")
    sims = []
    try:
        assert a.wait_log("subscribed (QoS 1): $share/ward/camnode/+/status"), a.log()
        assert b.wait_log("subscribed (QoS 1): $share/ward/camnode/+/status"), b.log()
        sims = [SimNode(f"pole-{i}", broker.port, tmp_path, ack_resend_s=1.0, seed=i).start()
                for i in range(NODES)]
        assert all(s.link.wait_connected(10) for s in sims)
        for k in range(EVENTS):
            for s in sims:
                s.event(time.monotonic())
            if k == EVENTS // 2:
                a.stop(signal.SIGKILL)  # mid-run, without a goodbye: its batch in hand is lost
            time.sleep(0.05)
        assert wait_until(lambda: all(s.outbox() == 0 for s in sims), 120), [s.outbox() for s in sims]
        sent = {eid for s in sims for eid in s.sent}
        rows = events_cli(archive_url)
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)) == len(sent) == NODES * EVENTS
        assert set(ids) == sent
        assert {r["phase"] for r in rows} == {"end"}
        engine = open_archive(archive_url, migrate=False)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(events)).scalar() == NODES * EVENTS
        engine.dispose()
    finally:
        for s in sims:
            s.close()
        a.stop()
        assert b.stop() == 0, b.log()[-3000:]
    final_b = [line for line in b.log().splitlines() if "stopped:" in line][-1]
    assert "'event':" in final_b
