"""The ward's broker as provisioning generates it, attacked from the inside.

A real mosquitto is started from the files ``camnode-provision`` wrote and ``install-broker``
installed (0640 root:mosquitto), as root so that it drops to its Debian service user
``mosquitto`` exactly as the packaged service does, with TLS from the ward's own CA. Then:
cross-node publish and subscribe, client-id takeover, a retired node, a wrong password, a
technician reading footage topics, a station forging node messages — all refused; what each
role is meant to do works (so the refusals are not a dead broker).

"Not delivered" is shown without sleeping: the same publisher then sends a message the
subscriber may read, and MQTT keeps one publisher's order, so the permitted message arriving
first-and-alone proves the forbidden one was dropped.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from node.localbroker import find_mosquitto, free_port
from provisioning.cli import main as provision


class Mosquitto:
    """mosquitto run like Debian's service: started as root, a main config that includes the
    generated drop-in, persistence in a directory the service user owns."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.proc: subprocess.Popen | None = None
        data = root / "data"
        data.mkdir(exist_ok=True)
        shutil.chown(data, "mosquitto")
        (root / "main.conf").write_text(f"persistence_location {data}/\nlog_dest stderr\n"
                                        f"include_dir {root / 'conf.d'}\n")

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([find_mosquitto(), "-c", str(self.root / "main.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise TimeoutError("mosquitto did not listen")

    def reload(self) -> None:
        """What ``systemctl reload mosquitto`` does: SIGHUP, after privileges were dropped."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def uid(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
        raise AssertionError("no Uid line")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    assert os.geteuid() == 0, "this test starts mosquitto as root, which then drops to its user"
    out = tmp_path_factory.mktemp("sec") / "ward-3"
    port = free_port()
    for node_id in ("pole-7", "pole-8", "pole-9"):
        assert provision(["node", "--id", node_id, "--broker", f"127.0.0.1:{port}", "--out", str(out),
                          "--source", "synthetic", "--no-detect"]) == 0
    for role, user in (("station", "station-a"), ("station", "station-b"), ("technician", "tech-an")):
        assert provision([role, "--user", user, "--out", str(out)]) == 0
    assert provision(["retire", "pole-9", "--out", str(out)]) == 0  # a pole taken down
    # the broker host: a folder the service user can traverse (pytest's tmp is root-only)
    root = Path(tempfile.mkdtemp(prefix="camnode-broker-"))
    root.chmod(0o755)
    assert provision(["install-broker", str(out), "--dest", str(root / "camnode"),
                      "--conf", str(root / "conf.d" / "camnode.conf"), "--bind", "127.0.0.1"]) == 0
    broker = Mosquitto(root, port).start()
    yield out, broker
    broker.stop()
    shutil.rmtree(root, ignore_errors=True)


def _secret(out: Path, user: str) -> str:
    f = out / user / "mqtt.password" if user.startswith("pole-") else out / "users" / user / "password"
    return f.read_text().strip()


class Client:
    """A raw paho client (its own client id, unlike the station tools) that records everything."""

    def __init__(self, out: Path, port: int, user: str | None, password: str | None = None, *,
                 client_id: str = "", tls: bool = True, session_s: int = 0) -> None:
        self.connack: paho.ReasonCode | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.disconnects: list[object] = []
        self.pubacks: dict[int, paho.ReasonCode] = {}
        self.connected, self.got = threading.Event(), threading.Condition()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if user is not None:
            c.username_pw_set(user, password if password is not None else _secret(out, user))
        if tls:
            c.tls_set(ca_certs=str(out / "pki" / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda cl, ud, fl, rc, pr: self.disconnects.append(rc)
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        props = None
        if session_s:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_s
        self.c = c
        c.connect("127.0.0.1", port, clean_start=not session_s, properties=props)
        c.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _on_connect(self, cl, ud, flags, rc, props) -> None:
        self.connack = rc
        self.connected.set()

    def _on_message(self, cl, ud, msg) -> None:
        with self.got:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.got.notify_all()

    def _on_publish(self, cl, ud, mid, rc, props) -> None:
        with self.got:
            self.pubacks[mid] = rc
            self.got.notify_all()

    @property
    def ok(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def sub(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(10)

    def pub(self, topic: str, payload: bytes = b"{}") -> int:
        """PUBACK reason code value (0 success, 16 no subscribers, 135 not authorised)."""
        info = self.c.publish(topic, payload, qos=1)
        with self.got:
            assert self.got.wait_for(lambda: info.mid in self.pubacks, 10), f"no PUBACK for {topic}"
            return self.pubacks[info.mid].value

    def wait_for(self, topic: str, n: int = 1) -> list[tuple[str, bytes]]:
        with self.got:
            assert self.got.wait_for(lambda: sum(t == topic for t, _ in self.messages) >= n, 15), \
                (topic, self.messages)
            return list(self.messages)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _refused(c: Client) -> bool:
    return c.connack is not None and c.connack.is_failure


def test_broker_runs_as_its_service_user_with_tls_only(ward):
    out, broker = ward
    assert broker.uid() == pwd.getpwnam("mosquitto").pw_uid
    for name in ("passwd", "server.key"):
        st = (broker.root / "camnode" / name).stat()
        assert st.st_mode & 0o777 == 0o640 and st.st_uid == 0  # not world-readable
    from station.cli import main as station

    # the station's tools: in clear to the TLS port is refused with a reason
    pw = out / "users" / "station-a" / "password"
    assert station(["diag", "pole-7", "--port", str(broker.port), "--username", "station-a",
                    "--password-file", str(pw), "--connect-timeout", "3"]) == 1
    # with the ward's CA: connected, logged in, asked (no node runs here, so no reply)
    assert station(["diag", "pole-7", "--port", str(broker.port), "--username", "station-a",
                    "--password-file", str(pw), "--tls-ca", str(out / "users" / "station-a" / "ca.crt"),
                    "--timeout", "0.3"]) == 1


def test_logins_refused(ward):
    out, broker = ward
    retired = Client(out, broker.port, "pole-9")  # its own, once valid, password
    wrong = Client(out, broker.port, "pole-7", "not-the-password")
    unknown = Client(out, broker.port, "pole-99", "x")
    anonymous = Client(out, broker.port, None)
    try:
        for c in (retired, wrong, unknown, anonymous):
            assert _refused(c), c.connack
    finally:
        for c in (retired, wrong, unknown, anonymous):
            c.close()
    good = Client(out, broker.port, "pole-7")
    assert good.ok
    good.close()


def test_nodes_cannot_touch_each_other(ward):
    out, broker = ward
    p7, p8, st = (Client(out, broker.port, u) for u in ("pole-7", "pole-8", "station-a"))
    try:
        p7.sub("camnode/#")  # mosquitto grants it, then filters what it delivers
        st.sub("camnode/#")
        # pole-7 may not speak for pole-8, nor command it, nor acknowledge its events
        for topic in ("camnode/pole-8/status", "camnode/pole-8/event", "camnode/pole-8/heartbeat",
                      "camnode/pole-8/cmd/diag", "camnode/pole-8/ack/event", "camnode/pole-7/cmd/diag",
                      "camnode/pole-7/ack/event", "camnode/x", "other/pole-7/event", "$SYS/x"):
            assert p7.pub(topic) == 135, topic
        from node.link.topics import NODE_PUBLISHES

        for leaf in NODE_PUBLISHES:  # everything the node's code publishes is allowed
            assert p7.pub(f"camnode/pole-7/{leaf.replace('#', 'x/1')}") in (0, 16), leaf
        assert p7.pub("camnode/pole-7/event") in (0, 16)
        st.wait_for("camnode/pole-7/event")
        # pole-8's traffic and commands never reach pole-7; its own command does
        assert p8.pub("camnode/pole-8/event", b'{"id": "e8"}') in (0, 16)
        assert st.pub("camnode/pole-8/cmd/diag") in (0, 16)
        assert st.pub("camnode/pole-8/ack/event") in (0, 16)
        assert st.pub("camnode/pole-7/cmd/diag") in (0, 16)
        msgs = p7.wait_for("camnode/pole-7/cmd/diag")
        assert [t for t, _ in msgs] == ["camnode/pole-7/cmd/diag"], msgs
        st.wait_for("camnode/pole-8/event")
        # its own acknowledgements reach it
        assert st.pub("camnode/pole-7/ack/event", b'{"id": "e7", "phase": "end"}') in (0, 16)
        p7.wait_for("camnode/pole-7/ack/event")
        # the station cannot forge what a node says
        for topic in ("camnode/pole-7/event", "camnode/pole-7/status", "camnode/pole-7/clip/r/0"):
            assert st.pub(topic) == 135, topic
    finally:
        for c in (p7, p8, st):
            c.close()


def test_client_id_takeover_fails(ward):
    out, broker = ward
    victim = Client(out, broker.port, "pole-7", client_id="camnode-pole-7")
    st = Client(out, broker.port, "station-a")
    assert victim.ok and st.ok
    victim.sub("camnode/pole-7/cmd/#")
    # pole-8's credentials with pole-7's client id, and a station's: both connect as themselves
    attackers = [Client(out, broker.port, "pole-8", client_id="camnode-pole-7"),
                 Client(out, broker.port, "station-b", client_id="camnode-pole-7")]
    try:
        assert all(a.ok for a in attackers)
        # the victim is still connected: a command sent after the attacks reaches it
        assert st.pub("camnode/pole-7/cmd/ir", b'{"mode": "auto"}') in (0, 16)
        victim.wait_for("camnode/pole-7/cmd/ir")
        assert victim.disconnects == [] and victim.c.is_connected()
        # the binding is by user name: pole-7's own credentials do replace its session
        again = Client(out, broker.port, "pole-7", client_id="anything")
        assert again.ok
        assert st.pub("camnode/pole-7/cmd/help") in (0, 16)  # ordered after the takeover
        deadline = time.monotonic() + 10
        while not victim.disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victim.disconnects, "the same user's new session should replace the old one"
        again.close()
    finally:
        victim.c.loop_stop()
        for c in (*attackers, st):
            c.close()


def test_technician_sees_health_never_footage(ward):
    out, broker = ward
    tech, p7 = Client(out, broker.port, "tech-an"), Client(out, broker.port, "pole-7")
    try:
        tech.sub("camnode/#")
        # footage and events from the node: dropped for the technician; then its heartbeat
        for topic in ("camnode/pole-7/event", "camnode/pole-7/snapshot/e1", "camnode/pole-7/clip/r1/0",
                      "camnode/pole-7/lost",
                      "camnode/pole-7/reply/clip", "camnode/pole-7/reply/live"):
            assert p7.pub(topic, b"footage") in (0, 16)
        assert p7.pub("camnode/pole-7/heartbeat") in (0, 16)
        msgs = tech.wait_for("camnode/pole-7/heartbeat")
        assert [t for t, _ in msgs] == ["camnode/pole-7/heartbeat"], msgs
        # maintenance commands yes; footage commands, acknowledgements and node topics no
        assert tech.pub("camnode/pole-7/cmd/diag") in (0, 16)
        for topic in ("camnode/pole-7/cmd/clip", "camnode/pole-7/cmd/hold", "camnode/pole-7/cmd/live",
                      "camnode/pole-7/ack/event", "camnode/pole-7/status"):
            assert tech.pub(topic) == 135, topic
    finally:
        tech.close()
        p7.close()


def test_station_session_keeps_a_day_of_events_across_a_restart(ward):
    """Issue 10's need: a station away (and a broker restarted) still gets every event, more
    than mosquitto's default queue of 1,000."""
    out, broker = ward
    st = Client(out, broker.port, "station-b", session_s=86400)
    st.sub("camnode/+/event")
    st.close()  # away
    p8 = Client(out, broker.port, "pole-8")
    n = 1500
    for i in range(n):
        p8.c.publish("camnode/pole-8/event", f'{{"id": "{i}"}}'.encode(), qos=1)
    assert p8.pub("camnode/pole-8/event", b'{"id": "last"}') in (0, 16)  # PUBACK after all the rest
    p8.close()
    broker.stop()
    broker.start()  # persistence: the queue survives the broker's restart
    back = Client(out, broker.port, "station-b", session_s=86400)
    try:
        back.wait_for("camnode/pole-8/event", n + 1)
        ids = [p for t, p in back.messages if t == "camnode/pole-8/event"]
        assert ids[0] == b'{"id": "0"}' and ids[-1] == b'{"id": "last"}' and len(set(ids)) == n + 1
    finally:
        back.close()


def test_changes_reach_the_running_broker_on_reload(ward):
    """A node added and one retired after the broker started: the service user rereads the
    files on SIGHUP (a root-only password file would keep the old list)."""
    out, broker = ward
    still_connected = Client(out, broker.port, "pole-8")  # the pole about to be retired
    assert still_connected.pub("camnode/pole-8/heartbeat") in (0, 16)
    assert provision(["node", "--id", "pole-10", "--out", str(out), "--source", "synthetic",
                      "--no-detect"]) == 0
    assert provision(["retire", "pole-8", "--out", str(out)]) == 0
    assert provision(["install-broker", str(out), "--dest", str(broker.root / "camnode"),
                      "--conf", str(broker.root / "conf.d" / "camnode.conf"), "--bind", "127.0.0.1"]) == 0
    broker.reload()
    deadline = time.monotonic() + 10
    while True:
        new, old = Client(out, broker.port, "pole-10"), Client(out, broker.port, "pole-8")
        new.close()
        old.close()
        if (new.ok and _refused(old)) or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # the signal is handled asynchronously
    assert new.ok and _refused(old), (new.connack, old.connack)
    # the retired node's open connection is closed by the reload, and it cannot come back
    while still_connected.c.is_connected() and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    assert still_connected.disconnects and not still_connected.c.is_connected()
    still_connected.close()


def test_a_second_program_with_the_same_user_ends_the_first_with_a_reason(ward, capsys):
    """Bound client ids mean one connection per user: the station tool that is replaced says
    why and stops, instead of reconnecting and knocking the other off in turn, forever."""
    import io

    from station.connect import Connection
    from station.mqtt_session import open_session
    from station.watch import Watcher

    out, broker = ward
    conn = Connection("127.0.0.1", broker.port, username="tech-an", tls_ca=str(out / "pki" / "ca.crt"),
                      password=_secret(out, "tech-an"))
    view = Watcher(conn, out=io.StringIO())
    view.start()
    try:
        with open_session(conn, [("camnode/+/status", 1)]) as second:
            assert view.ended.wait(30)
            assert "another program logged in as tech-an?" in (view.end_reason or "")
            # the replaced one does not come back: the second stays connected and working
            got = threading.Event()
            second._on_message = lambda msg: got.set()
            p7 = Client(out, broker.port, "pole-7")
            assert p7.pub("camnode/pole-7/status", b'{"state": "online"}') in (0, 16)
            p7.close()
            assert got.wait(15) and second.client.is_connected()
    finally:
        view.stop()
