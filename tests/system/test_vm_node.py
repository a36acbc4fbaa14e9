"""The whole node in a virtual machine: first boot from the installer's card, systemd's readiness
and watchdog for real, and power cuts that lose the guest's page cache.

The node is this module's copy of the card after first boot (``conftest.py``), booted once.
The figures each test measures go to the run's summary (``figure``) and are quoted in the issue note.
"""

from __future__ import annotations

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
    pid = _prop(node, "MainPID")
    assert probe.sh(node, f"ps -o user= -p {pid}") == "camnode"
    # the node that heartbeats is the one first boot installed from the card's wheels
    assert "/opt/camnode/.venv/bin/camnode" in probe.sh(node, f"tr '\\0' ' ' < /proc/{pid}/cmdline")


def test_watchdog_restarts_a_hung_node_and_the_station_sees_it_return(node, figure):
    watchdog_s = int(re.fullmatch(r"(\d+)s", _prop(node, "WatchdogUSec")).group(1))
    restart_s = int(re.fullmatch(r"(\d+)s", _prop(node, "RestartUSec")).group(1))
    pid = _prop(node, "MainPID")
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
    new_pid = _prop(node, "MainPID")
    assert new_pid != pid and int(_prop(node, "NRestarts")) == restarts + 1
    journal = probe.sh(node, "journalctl -u camnode -o cat --no-pager | tail -n 60")
    assert "Watchdog timeout" in journal, journal
    # the GPIO safe-state hook (ExecStopPost) ran after the kill and succeeded
    after = journal[journal.rindex("Watchdog timeout"):]
    assert "GPIO safe state: IR off" in after and "safe state failed" not in after, after
    started = int(_prop(node, "ActiveEnterTimestampMonotonic")) - \
        int(_prop(node, "ExecMainStartTimestampMonotonic"))
    figure(f"watchdog: hung node back at the station after {back_s:.1f} s "
          f"(WatchdogSec {watchdog_s} s + RestartSec {restart_s} s + start to READY {started / 1e6:.1f} s)")
    assert back_s >= watchdog_s  # killed by the watchdog, not by anything sooner
    assert back_s <= watchdog_s + restart_s + started / 1e6 + 2 * 2.0 + 15  # + heartbeat period, slack


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
        lines = "\\n".join(x.strip() for x in RECORD.split(";") if x.strip())
        probe.sh(node, f"sed -i 's/^\\[record\\]$/[record]\\n{lines}/' /etc/camnode/node.toml"
            " && systemctl restart camnode", timeout=600)


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
            skew = _guest_us(node) - (h0 + to_us(datetime.now(UTC))) // 2
            skews.append(skew / 1e6)
            cut_us = to_us(datetime.now(UTC)) + skew  # the cut on the guest's clock (footage times)
            node.vm.kill()
            camp.kills += 1
            writes.add(before, after, t1 - t0)
            store = rdump(node.card, tmp_path / "cut")
            camp.problems += side_databases(store)
            check_store(store, decoded, camp, cut_us)
            assert not camp.problems, camp.problems
            print(f"cut {camp.kills}: lost {camp.losses_s[-1]:.1f} s; so far {camp.segments} segments, "
                  f"{camp.recovered} recovered, {camp.removed_parts} .part removed", flush=True)
            node.vm.start()
        node.station.wait("heartbeat", after=time.monotonic(), timeout=900)
        node.vm.wait_ready(300)
        events = _archived_exactly_once(node, archive)
    finally:
        archive.stop()
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
    assert camp.problems == []
    assert camp.segments > 0
    assert events.recorded > 0, "no event recorded during the campaign"
    assert events.ok, events
    assert events.end_reasons.get("interrupted", 0) + events.end_reasons.get("shutdown", 0) > 0
    if not RECORD and not COMMIT_S:
        # the default flush policy (fdatasync per fragment) bounds a cut's loss to the fragment
        # being written (record.fragment_s, 2 s) plus the skew measurement's slack; writeback
        # alone lost 6-8 s here (docs/recording.md)
        assert losses[-1] <= 3.0, f"a cut lost {losses[-1]:.1f} s of footage (bound 3 s)"


def test_the_node_reports_its_unit_ready_only_when_it_runs(node):
    # Type=notify: systemd recorded READY (ActiveEnter) after the process started, with a gap that
    # is the node's own start-up, and the status line the node sent with it
    started = int(_prop(node, "ExecMainStartTimestampMonotonic"))
    active = int(_prop(node, "ActiveEnterTimestampMonotonic"))
    assert active > started
    assert re.search(r"\S", _prop(node, "StatusText"))
