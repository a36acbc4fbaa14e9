"""The installer's real path into a VM: flash the OS image to a card file, provision a node of a
ward whose broker runs on the host, copy the node's files and the board's wheels (x86_64 or
aarch64) onto the card with ``camnode-provision image``, boot (first boot installs and reboots),
boot again.

The host side watches like the police post does: a station login subscribed to the node's topics.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from node.localbroker import free_port
from provisioning.cli import main as provision
from station.live.credentials import load_secret
from tests.integration.test_broker_security import Mosquitto
from tests.system.vm import VM, cmdline_of
from tests.system.vmimage import BOOT_START, SECTOR, X86_64, Arch, base_image

NODE_ID = "vm-1"
#: the station login a test's real ``camnode-station serve`` (the archive) uses on the ward's broker
ARCHIVE_USER = "station-archive"
#: the station's media relay as the node would reach it (live view is provisioned, not exercised)
RELAY = "rtsp://10.0.2.2:8554"
#: a third station login for one-off tools a test runs beside the watcher and the archive
#: (``camnode-station clip``...): the broker binds client ids to user names, so each needs its own
TOOL_USER = "station-tool"
#: small frames and a short heartbeat: the guest runs under software emulation, several times
#: slower than this machine (which is itself faster than a Pi 4 for most work)
NODE_TUNING = {"[camera]\n": "width = 320\nheight = 240\nfps = 5.0\nlores_width = 160\nlores_height = 120\n",
               "[mqtt]\n": "heartbeat_s = 2.0\n"}


class Station:
    """A station login on the ward's broker recording what the node publishes, with arrival times."""

    def __init__(self, ward: Path, port: int, user: str = "station-a") -> None:
        self.messages: list[tuple[float, str, bytes]] = []
        self.cond = threading.Condition()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=paho.MQTTv5)
        c.username_pw_set(user, (ward / "users" / user / "password").read_text().strip())
        c.tls_set(ca_certs=str(ward / "pki" / "ca.crt"))
        c.on_message = self._on_message
        connected = threading.Event()
        c.on_connect = lambda *a: (c.subscribe(f"camnode/{NODE_ID}/#", qos=1), connected.set())
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert connected.wait(15), "the station could not connect to the ward's broker"
        self.c = c

    def _on_message(self, cl, ud, msg) -> None:
        with self.cond:
            self.messages.append((time.monotonic(), msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait(self, suffix: str, *, after: float = 0.0, timeout: float) -> tuple[float, dict]:
        """The first message on ``camnode/<node>/<suffix>`` that arrived after ``after``."""
        topic = f"camnode/{NODE_ID}/{suffix}"

        def found():
            return next(((t, p) for t, tp, p in self.messages if tp == topic and t > after), None)

        with self.cond:
            assert self.cond.wait_for(found, timeout), \
                f"nothing on {topic} within {timeout:.0f} s; got {sorted({tp for _, tp, _ in self.messages})}"
            t, payload = found()
        try:
            return t, json.loads(payload)
        except ValueError:
            return t, {"raw": payload.decode(errors="replace")}

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class Ward:
    """A provisioned ward with its broker on the host and the node's card as its first boot left it
    (installed, rebooted, never booted since): each test module boots its own copy of ``card``."""

    ward: Path
    port: int
    broker: Broker
    card: Path
    first_boot_s: float
    arch: Arch = X86_64
    image_s: float = 0.0  # getting the card image (built, or taken from the cache)


@dataclass
class Installed:
    """One running node VM booted from a copy of the ward's card, and the station watching it."""

    vm: VM
    station: Station
    ward: Path
    card: Path
    boot_s: float

    def close(self) -> None:
        self.vm.kill()
        self.station.close()


def fat_listing(card: Path, folder: str = "::/") -> str:
    r = subprocess.run(["mdir", "-b", "-i", f"{card}@@{BOOT_START * SECTOR}", folder], capture_output=True,
                       text=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": os.environ["PATH"]})
    return r.stdout if r.returncode == 0 else ""


def board_wheels(arch: Arch) -> Path:
    """camnode's wheel from this checkout and its dependencies' wheels for the board's CPU, made by
    ``camnode-provision wheels --arch`` (the dependencies' download is cached by pip)."""
    d = Path(tempfile.mkdtemp(prefix="camnode-wheels-"))
    assert provision(["wheels", "--arch", arch.name, "--out", str(d)]) == 0
    return d


class Broker:
    """The ward's broker on the host (the guest reaches it as 10.0.2.2:<port>)."""

    def __init__(self, ward: Path, port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="camnode-broker-"))
        self.root.chmod(0o755)
        assert provision(["install-broker", str(ward), "--dest", str(self.root / "camnode"),
                          "--conf", str(self.root / "conf.d" / "camnode.conf"), "--bind", "127.0.0.1"]) == 0
        self.mosquitto = Mosquitto(self.root, port).start()

    def stop(self) -> None:
        self.mosquitto.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def install(work: Path, *, arch: Arch = X86_64, detection: Sequence[str] = ("--no-detect",),
            on_card: Callable[[Path, Path], None] | None = None, first_boot_timeout: float = 1800) -> Ward:
    """The installer's path up to the end of first boot: flash, provision, ``image``, boot; first
    boot installs camnode from the card's wheels and reboots (qemu exits). ``detection``: the
    node's detector arguments to ``camnode-provision node``; ``on_card(card, wheels)``: test data
    put on the card before its first boot. ``CAMNODE_VM_GOLDEN=DIR`` (developing the tests) keeps
    that card and ward in ``DIR/<arch>`` and starts from them when present."""
    keep = Path(os.environ["CAMNODE_VM_GOLDEN"]) / arch.name if os.environ.get("CAMNODE_VM_GOLDEN") else None
    if keep is not None and (keep / "card.img").exists():
        ward = work / "ward"
        shutil.copytree(keep / "ward", ward)
        shutil.copytree(keep / "station", work / "station")
        port = json.loads((ward / "ward.json").read_text())["broker"]["port"]
        return Ward(ward, port, Broker(ward, port), keep / "card.img", 0.0, arch)
    t0 = time.monotonic()
    base = base_image(arch)
    image_s = time.monotonic() - t0
    card = work / "card.img"
    with card.open("wb") as fh:  # an image-file "card" as big as the image
        fh.truncate(base.stat().st_size)
    assert provision(["flash", "--quiet", str(base), str(card)]) == 0
    port = free_port()
    ward = work / "ward"
    # live view on, as an installer turns it on: the stream password derived from the station's
    # secret (first boot must install it 0600 for the node's user)
    load_secret(work / "station")
    assert provision(["node", "--id", NODE_ID, "--broker", f"10.0.2.2:{port}", "--out", str(ward),
                      "--source", "synthetic", *detection, "--wiring", "none",
                      "--relay", RELAY, "--live-secret", str(work / "station" / "live-secret")]) == 0
    assert provision(["station", "--user", "station-a", "--out", str(ward)]) == 0  # the watcher
    assert provision(["station", "--user", ARCHIVE_USER, "--out", str(ward)]) == 0  # a real `serve`
    assert provision(["station", "--user", TOOL_USER, "--out", str(ward)]) == 0  # clip pulls...
    toml = ward / NODE_ID / "node.toml"
    text = toml.read_text()
    for section, lines in NODE_TUNING.items():
        text = text.replace(section, section + lines, 1)
    toml.write_text(text)
    broker = Broker(ward, port)
    try:
        wheels = board_wheels(arch)
        try:
            assert provision(["image", "--image", str(card), "--arch", arch.name, "--wheels", str(wheels),
                              str(ward / NODE_ID)]) == 0
            if on_card is not None:
                on_card(card, wheels)
        finally:
            shutil.rmtree(wheels, ignore_errors=True)
        assert "firstboot.sh" in cmdline_of(card)
        vm = VM(card, work / "first-boot", arch=arch)
        t0 = time.monotonic()
        vm.start()
        vm.wait_exit(first_boot_timeout)  # first boot: installs camnode from the wheels, then reboots
        first = time.monotonic() - t0
    except BaseException:
        broker.stop()
        raise
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ward, keep / "ward")
        shutil.copytree(work / "station", keep / "station")
        _copy_card(card, keep / "card.img")
    return Ward(ward, port, broker, card, first, arch, image_s)


def _copy_card(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)


def boot(ward: Ward, work: Path, *, timeout: float = 900) -> Installed:
    """A node of its own: a copy of the ward's card booted until it heartbeats at the station
    (within ``timeout``) and its control shell answers."""
    work.mkdir(parents=True, exist_ok=True)
    card = work / "card.img"
    _copy_card(ward.card, card)
    station = Station(ward.ward, ward.port)
    vm = VM(card, work / "vm", arch=ward.arch)
    try:
        t0 = time.monotonic()
        vm.start()
        station.wait("heartbeat", after=t0, timeout=timeout)
        booted = time.monotonic() - t0
        vm.wait_ready(timeout / 3)
    except BaseException:
        vm.kill()
        station.close()
        raise
    return Installed(vm, station, ward.ward, card, booted)
