"""Fixtures shared by the whole suite.

``shared_dir`` points at the project's shared footage and models (``../shared`` beside the
repository, or ``$CAMNODE_SHARED``). Tests that need them fail, never skip, when they are
missing: CI always has them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("CAMNODE_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    p = shared_path()
    if not (p / "models").is_dir() or not (p / "media").is_dir():
        pytest.fail(f"shared footage/models not found at {p} (set CAMNODE_SHARED)")
    return p


@pytest.fixture
def broker():
    """A private mosquitto on a free loopback port, stopped after the test."""
    from node.localbroker import LocalBroker

    b = LocalBroker().start()
    yield b
    b.cleanup()


class Subscriber:
    """A real MQTT client that records what the broker delivers, for assertions."""

    def __init__(self, host: str, port: int, topic: str = "#") -> None:
        import threading

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *_: subscribed.set()
        c.on_message = self._on_message
        c.connect(host, port)
        c.loop_start()
        self.client = c
        # return only once the broker confirmed the subscription: nothing published after
        # this constructor can be missed
        if not subscribed.wait(10):
            raise TimeoutError(f"no SUBACK from the broker for {topic}")

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def json(self, suffix: str) -> list[dict]:
        import json

        with self._cond:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, pred, timeout: float = 20.0) -> bool:
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
            return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber_factory():
    subs: list[Subscriber] = []

    def make(host: str, port: int, topic: str = "#") -> Subscriber:
        s = Subscriber(host, port, topic)
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request, tmp_path):
    """A fresh, empty archive database: a SQLite file, then a database of its own on the real
    PostgreSQL server (created for the test, dropped after it). Every archive test runs on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'archive.db'}"
        return
    from tests.pgdb import temporary_database

    with temporary_database() as url:
        yield url


@pytest.fixture
def station_factory(tmp_path):
    """Start the real station service in this process: ``station_factory(port, url=None)``
    (default: a SQLite archive in tmp_path); it archives and acknowledges like ``serve``."""
    from node.clock import SystemClock
    from station.archive.db import open_archive
    from station.service.config import ServeConfig
    from station.service.session import Service

    started = []

    def make(port: int, url: str | None = None, **cfg):
        db = url or f"sqlite:///{tmp_path / f'archive{len(started)}.db'}"
        cfg.setdefault("media", str(tmp_path / f"media{len(started)}"))
        cfg.setdefault("client_id", f"station-test-{len(started)}")
        conf = ServeConfig(port=port, db=db, **cfg)
        svc = Service(conf, open_archive(db), SystemClock(), password=conf.password)
        svc.start()
        started.append(svc)
        if not svc.subscribed.wait(10):
            raise TimeoutError("the station service did not subscribe")
        return svc

    yield make
    for svc in started:
        svc.stop()
