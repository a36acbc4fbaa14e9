"""The console as a ward runs it: its station login on the ward's provisioned broker (TLS, the
ACL, the client id bound to the user name: one connection per user) beside a real provisioned
node. Its live feed, its commands (several at once, as the live wall sends them) and an evidence
case's clip pull share the console's one session: none of them ends another's connection
(each command used to log in again as the same user, which ended the feed)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from node.app import Node
from node.localbroker import free_port
from provisioning.cli import main as provision
from station.archive.schema import events
from station.connect import Connection
from tests.console.harness import start_console
from tests.integration.test_provisioning import _broker_for, run_here
from tests.stationproc import wait_until


def test_feed_commands_and_a_clip_pull_share_the_consoles_one_login(tmp_path):
    out, port = tmp_path / "ward", free_port()
    assert provision(["node", "--id", "pole-7", "--broker", f"127.0.0.1:{port}", "--out", str(out),
                      "--source", "synthetic", "--no-detect"]) == 0
    assert provision(["station", "--user", "station-post", "--out", str(out)]) == 0
    assert "use_username_as_clientid true" in (out / "broker" / "camnode.conf").read_text()
    broker = _broker_for(out, port).start()
    node = Node(run_here(out / "pole-7", tmp_path / "rec", heartbeat_s=0.5))
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,), name="test-node")
    th.start()
    login = out / "users" / "station-post"
    conn = Connection("127.0.0.1", port, username="station-post", tls_ca=str(login / "ca.crt"),
                      password=(login / "password").read_text().strip())
    console = start_console(tmp_path, port, connection=conn, inventory=str(out / "inventory.csv"))
    c = console.console
    try:
        assert console.bridge.connected.is_set(), console.bridge.error
        assert wait_until(lambda: any(r["node"] == "pole-7" and r["state"] == "OK"
                                      for r in c.live.fleet.rows()), 30), c.live.fleet.rows()
        assert wait_until(lambda: node.recorder.health()["segments_closed"] >= 3, 60)
        last_beat = c.live.history("pole-7")[-1]["utc"]  # (the history keeps the latest few)
        # eight commands at once, as the live wall and the node pages send them
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: c.command("pole-7", ("help", "holds")[i % 2], {}), range(8)))
        assert all(r.get("ok") for r in replies), replies
        # an evidence case over the same session: the hold, then the clip pulled and verified
        now = datetime.now(UTC).replace(tzinfo=None)
        with c.engine.begin() as db:
            db.execute(insert(events).values(
                id="pole-7-ev-1", node="pole-7", kind="motion", label="", phase="end", phases=7,
                start=now - timedelta(seconds=5), end=now - timedelta(seconds=4), duration_s=1.0,
                snapshot=False, payload={}, messages=1, received=now))
        job = c.cases.start("pole-7-ev-1", timedelta(seconds=3), [], "op")
        assert wait_until(lambda: job.state in ("done", "failed"), 90), job.state
        assert job.state == "done" and job.verified, (job.error, job.case.get("poles"))
        # meanwhile the feed never lost its connection and heartbeats kept coming
        assert console.bridge.drops == 0 and console.bridge.connected.is_set(), console.bridge.error
        assert wait_until(lambda: c.live.history("pole-7")[-1]["utc"] > last_beat, 5)
        assert [r["state"] for r in c.live.fleet.rows() if r["node"] == "pole-7"] == ["OK"]
        # the parts' subscriptions were all taken back (the feed's own stay)
        held = console.bridge.session.routes.held
        assert wait_until(lambda: not held(), 5), held()
    finally:
        console.stop()
        stop.set()
        th.join(30)
        broker.cleanup()
