"""The whole node in a virtual machine: first boot from the installer's card, systemd's readiness
and watchdog for real, and power cuts that lose the guest's page cache.

The node is this module's copy of the card after first boot (``conftest.py``), booted once.
The figures each test measures go to the run's summary (``figure``) and are quoted in the issue note.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from datetime import UTC, datetime

from node.record.segment import to_us
from station.live.credentials import node_password
from tests.record_crash import Campaign, check_store
from tests.system import nodeprobe as probe
from tests.system.nodevm import NODE_ID, RELAY, fat_listing
from tests.system.powercut import (
    Archive,
    DiskWrites,
    ExactlyOnce,
    archive_rows,
    card_events,
    compare,
    rdump,
    side_databases,
    top_writers,
)
from tests.system.vm import cmdline_of

CUTS = int(os.environ.get("CAMNODE_VM_CUTS", "5"))
#: seconds of recording before each cut (random in the range): CI's 5 cuts stay short, the soak
#: campaign keeps the longer window
WINDOW_S = (15.0, 40.0) if os.environ.get("CAMNODE_SYSTEM") == "soak" else (6.0, 16.0)
#: comparing flush policies (see ``_record_settings``)
RECORD = os.environ.get("CAMNODE_VM_RECORD", "")
#: comparing the ext4 journal's commit interval (s): ``mount -o remount,commit=N /`` at every
#: boot (the OS's mount, not the node's; a measurement only)
COMMIT_S = os.environ.get("CAMNODE_VM_COMMIT_S", "")


def _prop(node, name: str) -> str:
    return probe.sh(node, f"systemctl show camnode -p {name} --value")


def test_first_boot_installs_the_node_and_it_heartbeats_at_the_station(node):
    _, hb = node.station.wait("heartbeat", timeout=60)
    assert hb["node_id"] == NODE_ID
    # the boot partition: secrets and the wheels gone, the first-boot hook out of cmdline.txt
    assert "camnode" not in fat_listing(node.card).lower()
    assert "firstboot" not in cmdline_of(node.card)
    assert "cmdline.txt" in fat_listing(node.card)
    assert probe.sh(node, "ls -A /boot/firmware") == "cmdline.txt"
    # installed as the unit and the first-boot script say
    assert probe.sh(node, "systemctl is-enabled camnode") == "enabled"
    assert _prop(node, "Type") == "notify"
    assert _prop(node, "ActiveState") == "active"
    assert probe.sh(node, "stat -c '%a %U' /etc/camnode/mqtt.password /etc/camnode/signing.key "
               "/etc/camnode/live.password").split("\n") == ["600 camnode"] * 3
    # the stream password is the one derived for this node, not the station's secret
    secret = (node.ward.parent / "station" / "live-secret").read_text().strip().encode()
    assert probe.sh(node, "cat /etc/camnode/live.password") == node_password(secret, NODE_ID)
    assert f'relay = "{RELAY}"' in probe.sh(node, "cat /etc/camnode/node.toml")
    pid = probe.main_pid(node)
    assert probe.sh(node, f"ps -o user= -p {pid}") == "camnode"
    # the node that heartbeats is the one first boot installed from the card's wheels
    assert "/opt/camnode/.venv/bin/camnode" in probe.sh(node, f"tr '\\0' ' ' < /proc/{pid}/cmdline")


def test_watchdog_restarts_a_hung_node_and_the_station_sees_it_return(node, figure):
    watchdog_s = int(re.fullmatch(r"(\d+)s", _prop(node, "WatchdogUSec")).group(1))
    restart_s = int(re.fullmatch(r"(\d+)s", _prop(node, "RestartUSec")).group(1))
    pid = probe.main_pid(node)
    restarts = int(_prop(node, "NRestarts"))
    node.station.wait("heartbeat", timeout=60)
    probe.sh(node, f"kill -STOP {pid}")
    t_stop = time.monotonic()
    # the hung node sends nothing; systemd kills it after WatchdogSec, restarts it, it heartbeats
    deadline = t_stop + 600
    while True:
        t, hb = node.station.wait("heartbeat", after=t_stop, timeout=max(1.0, deadline - time.monotonic()))
        if hb.get("uptime_s", 1e9) < t - t_stop:
            break  # from the new process (an old one in flight does not count)
    back_s = t - t_stop
    # reported: the station heard the node go (its will: offline, "lost") before it came back
    gone = [(tm, json.loads(p)) for tm, tp, p in list(node.station.messages)
            if tp == f"camnode/{NODE_ID}/status" and t_stop < tm < t]
    assert any(st.get("state") == "offline" and st.get("reason") == "lost" for _, st in gone), gone
    new_pid = probe.main_pid(node)
    assert new_pid != pid and int(_prop(node, "NRestarts")) == restarts + 1
    journal = probe.sh(node, "journalctl -u camnode -o cat --no-pager | tail -n 60")
    assert "Watchdog timeout" in journal, journal
    # the GPIO safe-state hook (ExecStopPost) ran after the kill and succeeded
    after = journal[journal.rindex("Watchdog timeout"):]
    assert "GPIO safe state: IR off" in after and "safe state failed" not in after, after
    started = int(_prop(node, "ActiveEnterTimestampMonotonic")) - \
        int(_prop(node, "ExecMainStartTimestampMonotonic"))
    lost_s = next(tm for tm, st in gone if st.get("state") == "offline") - t_stop
    figure(f"watchdog: hung node reported offline (lost) at the station {lost_s:.1f} s after the hang, "
          f"back after {back_s:.1f} s (WatchdogSec {watchdog_s} s + RestartSec {restart_s} s + start to "
          f"READY {started / 1e6:.1f} s + the first heartbeat)")
    assert back_s >= watchdog_s  # killed by the watchdog, not by anything sooner
    # + the first heartbeat after READY (a period: 2 s), the stop's GPIO safe-state hook
    # (ExecStopPost: a Python start under emulation, several seconds on a loaded host) and the
    # host's view of it: 15 s
    assert back_s <= watchdog_s + restart_s + started / 1e6 + 2.0 + 15.0


def _recording(node) -> None:
    """Wait for a heartbeat that shows the encoder producing frames (after a boot, READY and the
    first heartbeat come before the camera and encoder have warmed up under emulation)."""
    probe.heartbeat(node, probe.recording, timeout=900, what="with frames encoded")


def _heartbeat(node, after: float, timeout: float = 60) -> dict:
    return node.station.wait("heartbeat", after=after, timeout=timeout)[1]


def _record_settings(node) -> None:
    """``CAMNODE_VM_RECORD``: settings added to the node's ``[record]`` (``;`` between them), e.g.
    ``sync_fragments = false`` to measure the old flush policy against the default."""
    if RECORD:
        pairs = (x.split("=", 1) for x in RECORD.split(";") if x.strip())
        probe.set_config(node, {"record": {k.strip(): v.strip() for k, v in pairs}})


def _guest_us(node) -> int:
    return int(probe.sh(node, "date +%s%6N"))


def _archived_exactly_once(node, archive: Archive) -> ExactlyOnce:
    """The last life: recording, then a clean stop (events open now end, ``shutdown``). What
    the card holds then is the node's record of its events; started again, the node delivers
    what its outbox still holds; once the outbox is empty (its heartbeat), every event on the
    card must be in the archive once, with a start and an end."""
    _recording(node)
    time.sleep(30)
    print(f"\n{top_writers(node)}")
    probe.sh(node, "systemctl stop camnode", timeout=600)
    stopped = _guest_us(node)
    card = card_events(node)
    assert card["open"] == [], f"events left open after a clean stop: {card['open']}"
    t0 = time.monotonic()
    probe.sh(node, "systemctl start camnode", timeout=600)
    deadline = t0 + 600
    while True:
        hb = _heartbeat(node, t0, max(1.0, deadline - time.monotonic()))
        t0 = time.monotonic()
        link = hb.get("link") or {}
        if link.get("outbox") == 0 and link.get("awaiting_archive", 0) == 0:
            break
    rows = [r for r in archive.events()
            if to_us(_utc(r["start"])) < stopped]  # events of the last life started after it
    result = compare(card["events"], rows, archive_rows(archive.url))
    print(f"\n{result.summary()}; the outbox held {card['outbox']} row(s) at the stop")
    return result


def _utc(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def test_power_cuts_while_recording(node, ward, tmp_path, figure):
    rng = random.Random(15)
    camp = Campaign()
    decoded: set[str] = set()
    writes = DiskWrites()
    skews: list[float] = []  # guest clock - host clock at each cut (s)
    slack: list[float] = []  # how well the skew of each cut's loss figure is known (s)
    archive = Archive(ward.ward, ward.port, tmp_path / "archive").start()  # the whole campaign
    try:
        _record_settings(node)
        for _ in range(CUTS):
            # recording for a while once frames flow, then the power goes
            _recording(node)
            if COMMIT_S:  # the ext4 journal's commit interval, for the comparison only
                node.vm.wait_ready(300)
                probe.sh(node, f"mount -o remount,commit={COMMIT_S} /")
            t0, before = time.monotonic(), DiskWrites.sample(node)
            time.sleep(rng.uniform(*WINDOW_S))
            after, t1 = DiskWrites.sample(node), time.monotonic()
            h0 = to_us(datetime.now(UTC))
            guest = _guest_us(node)
            h1 = to_us(datetime.now(UTC))
            skew = guest - (h0 + h1) // 2
            skews.append(skew / 1e6)
            cut_us = to_us(datetime.now(UTC)) + skew  # the cut on the guest's clock (footage times)
            node.vm.kill()
            camp.kills += 1
            writes.add(before, after, t1 - t0)
            store = rdump(node.card, tmp_path / "cut")
            camp.problems += side_databases(store)
            measured = len(camp.losses_s)
            check_store(store, decoded, camp, cut_us)
            if len(camp.losses_s) > measured:  # the skew is known to half the probe's round trip
                slack.append((h1 - h0) / 2e6)
            assert not camp.problems, camp.problems
            print(f"cut {camp.kills}: lost {camp.losses_s[-1]:.1f} s; so far {camp.segments} segments, "
                  f"{camp.recovered} recovered, {camp.removed_parts} .part removed", flush=True)
            node.vm.start()
        node.station.wait("heartbeat", after=time.monotonic(), timeout=900)
        node.vm.wait_ready(300)
        events = _archived_exactly_once(node, archive)
    finally:
        served = archive.stop()
    events.served(served)
    losses = sorted(camp.losses_s)
    figure(f"{CUTS} power cuts ({RECORD or 'default flush policy'}"
          f"{f', ext4 commit={COMMIT_S} s' if COMMIT_S else ''}): {camp.segments} segments, "
          f"{camp.recovered} recovered, {camp.removed_parts} .part removed, 0 corrupt; footage lost "
          f"per cut (cut time - end of the last segment on the card) median "
          f"{losses[len(losses) // 2]:.1f} s, max {losses[-1]:.1f} s; "
          f"all: {[round(x, 1) for x in camp.losses_s]} (guest clock - host clock "
          f"{min(skews):+.2f}..{max(skews):+.2f} s, taken out)")
    figure(writes.summary())
    figure(events.summary())
    assert camp.segments > 0
    assert events.recorded > 0, "no event recorded during the campaign"
    assert events.ok, events
    assert events.end_reasons.get("interrupted", 0) + events.end_reasons.get("shutdown", 0) > 0
    if not RECORD and not COMMIT_S:
        # the default flush policy (fdatasync per fragment) bounds a cut's loss to the fragment
        # being written (record.fragment_s, 2 s) and the frames on their way to it (two frame
        # periods at 5 fps, and what encoding and the fragment's own fdatasync take under
        # emulation: 0.5 s), as a process kill's; each cut's figure is known to its skew probe's
        # slack. Writeback alone lost 6-8 s here (docs/recording.md)
        bound = 2.0 + 2 / 5.0 + 0.5
        over = [(round(lost, 2), round(bound + sl, 2))
                for lost, sl in zip(camp.losses_s, slack, strict=True) if lost > bound + sl]
        assert not over, f"cuts lost more footage than a fragment and two frames: {over} (lost, bound)"


def test_the_node_reports_its_unit_ready_only_when_it_runs(node):
    # Type=notify: systemd recorded READY (ActiveEnter) after the node's own start-up had begun
    # (its "starting" line in the journal, on the same monotonic clock) — a Type=simple unit is
    # active the moment its process starts — and the status the node sent with READY
    started = int(_prop(node, "ExecMainStartTimestampMonotonic"))
    active = int(_prop(node, "ActiveEnterTimestampMonotonic"))
    line = probe.sh(node, "journalctl -u camnode -o short-monotonic --no-pager | grep 'starting: node' "
                    "| tail -n 1")
    logged = int(float(re.match(r"\[\s*([\d.]+)\]", line).group(1)) * 1e6)
    assert started < logged < active, (started, logged, active, line)
    assert _prop(node, "StatusText").startswith("recording "), _prop(node, "StatusText")
