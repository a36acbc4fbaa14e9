"""The recorder: the one object the app builds (:func:`build_recorder`) and adds to the encoder.

It is an :class:`~hw.encode.base.Output` whose ``write`` only queues the packet: a *writer*
thread muxes packets into segments (:class:`~node.record.writer.SegmentWriter`), fsyncs and
indexes them, and a *retention* thread sweeps every ``sweep_s`` (and at once when the disk
fills). So neither an fsync at a segment close nor an ``unlink`` ever stalls the encoder.

If the writer falls behind by more than ``queue_bytes`` (a card that stopped answering),
packets are dropped up to the next keyframe and the segment is closed at the gap, so every
file stays decodable; the drop is counted in ``health()``.

``protect``/``mark`` are called by the event actions (:mod:`node.actions`, analysis thread) and ``hold`` by
operators; they journal the event and flag the covered segments in the index, including
segments not yet written when the end is open (``None``).

Thread: ``write`` on the encoder thread; ``protect``/``mark``/``hold``/``health``/``tick`` from any
thread; ``start``/``stop`` from the app's thread. ``threaded=False`` runs everything on the
caller's thread (deterministic tests; ``tick()`` then sweeps).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from hw.media import EncodedPacket, StreamInfo
from node.record import holds
from node.record.integrity import GENESIS, Signer
from node.record.retention import Policy, Retention, disk_free
from node.record.segment import SegmentInfo, to_us
from node.record.store import Store
from node.record.writer import SegmentWriter

log = logging.getLogger(__name__)

_STOP = object()


class Recorder:
    """Continuous recording into ``root`` with retention and events."""

    def __init__(self, root: Path, clock: Any, *, segment_s: float = 60.0, frag_s: float = 2.0,
                 policy: Policy | None = None, signer: Signer | None = None,
                 sweep_s: float = 10.0, queue_bytes: int = 32 << 20,
                 sync_fragments: bool = False, threaded: bool = True,
                 free_fn: Any = disk_free) -> None:
        self.root = Path(root)
        self.clock = clock
        self.signer = signer or Signer.none()
        self.store = Store(self.root, self.signer, clock)
        self.open_report = self.store.open()
        assert self.store.index is not None
        head_seq, head = self.store.index.head()
        self.writer = SegmentWriter(self.root, segment_s, clock, frag_s=frag_s, signer=self.signer,
                                    next_seq=head_seq + 1, chain_head=head or GENESIS,
                                    on_closed=self._closed, sync_fragments=sync_fragments,
                                    on_full=self._wait_for_space)
        self.retention = Retention(self.store, clock, policy or Policy(), free_fn=free_fn)
        self.sweep_s = sweep_s
        self.queue_bytes = queue_bytes
        self.threaded = threaded
        self._q: deque[Any] = deque()
        self._qbytes = 0
        self._cv = threading.Condition()
        self._dropping = False
        self.dropped = 0
        self._wake = threading.Event()
        self._swept = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_error: str | None = None
        self.last_closed: SegmentInfo | None = None
        self.protected_deleted: list[str] = []
        self._unindexed: list[SegmentInfo] = []
        self._disk_full = False
        self.disk_full_events = 0

    # ------------------------------------------------------------------ Output

    def start(self, stream: StreamInfo) -> None:
        """Begin (or, after a camera reconnect, continue with a new ``stream``: the writer
        thread closes the open segment if the stream changed, in packet order)."""
        if self.threaded and self._threads:
            with self._cv:
                self._q.append(stream)
                self._cv.notify()
            return
        self.writer.start(stream)
        if self.threaded:
            self._stopping.clear()
            self._threads = [threading.Thread(target=self._write_loop, name="rec-writer", daemon=True),
                             threading.Thread(target=self._sweep_loop, name="rec-retention",
                                              daemon=True)]
            for t in self._threads:
                t.start()
        if not self.threaded:
            self.tick()

    def write(self, packet: EncodedPacket) -> None:
        """Queue a packet for the writer thread. Never blocks on I/O, never raises."""
        if not self.threaded:
            self.writer.write(packet)
            return
        with self._cv:
            if self._dropping and packet.keyframe and self._qbytes < self.queue_bytes // 2:
                self._dropping = False
                self._q.append(None)  # a gap marker: close the segment before this keyframe
            if self._dropping or self._qbytes + len(packet.data) > self.queue_bytes:
                if not self._dropping:
                    log.error("recorder queue full (%d bytes): dropping to the next keyframe",
                              self._qbytes)
                self._dropping = True
                self.dropped += 1
                return
            self._q.append(packet)
            self._qbytes += len(packet.data)
            self._cv.notify()

    def stop(self) -> None:
        """Write what is queued, close the open segment, stop the threads."""
        if self.threaded and self._threads:
            with self._cv:
                self._q.append(_STOP)
                self._cv.notify()
            writer, sweeper = self._threads
            writer.join(timeout=60)  # retention keeps freeing space while the queue drains
            self._stopping.set()
            self._wake.set()
            sweeper.join(timeout=30)
            self._threads = []
        else:
            self.writer.stop()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the writer has taken every queued packet; True if it did in time."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._q, timeout)

    def close(self) -> None:
        self.stop()
        self.store.close()

    # ------------------------------------------------------------------ threads

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._q:
                    self._cv.wait()
                item = self._q.popleft()
                if isinstance(item, EncodedPacket):
                    self._qbytes -= len(item.data)
                if not self._q:
                    self._cv.notify_all()  # drain() waiters
            if item is _STOP:
                self._guard(self.writer.stop)
                return
            if item is None:
                self._guard(self.writer.gap)
                continue
            if isinstance(item, StreamInfo):
                self._guard(lambda st=item: self.writer.start(st))
                continue
            self._guard(lambda p=item: self.writer.write(p))  # never let this thread die

    def _wait_for_space(self) -> None:
        """Writer thread, card full: run an emergency sweep and wait for it (at most 2 s;
        packets wait in the queue meanwhile, the encoder is never blocked)."""
        if not self._disk_full:
            log.error("card full: %s; asking retention for space", self.writer.last_error)
        self._disk_full = True
        if not self.threaded or not self._threads:
            self._guard(self.tick)
            return
        self._swept.clear()
        self._wake.set()
        self._swept.wait(2.0)

    def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            self._guard(self.tick)
            self._swept.set()
            self._wake.wait(self.sweep_s)
            self._wake.clear()

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("recorder: %s failed", getattr(fn, "__name__", fn))

    def _closed(self, info: SegmentInfo) -> None:
        """Writer thread: index a segment the writer has made final (retrying earlier ones
        a full disk kept out of the index; a restart would index them from their seals)."""
        self._unindexed.append(info)
        while self._unindexed:
            try:
                self.store.add(self._unindexed[0])
            except Exception as exc:
                self.last_error = f"index: {type(exc).__name__}: {exc}"
                log.error("indexing %s failed (%s); retrying at the next segment",
                          self._unindexed[0].name, exc)
                self._disk_full = True
                self._wake.set()
                break
            self.last_closed = self._unindexed.pop(0)
        if not self._unindexed and not info.recovered:
            # a whole segment written and indexed: earlier storage errors are over
            self.last_error = None
            self.writer.last_error = None
        last = self.retention.last
        if last.free_bytes and last.free_bytes < 2 * last.floor_bytes:
            self._wake.set()

    def tick(self) -> dict[str, Any]:
        """One retention sweep (the retention thread calls this every ``sweep_s``)."""
        emergency, self._disk_full = self._disk_full, False
        rep = self.retention.sweep(emergency=emergency)
        self.disk_full_events += emergency
        self.protected_deleted.extend(rep.protected_deleted)
        del self.protected_deleted[:-20]
        return rep.__dict__

    # ------------------------------------------------------------------ events

    def protect(self, event_id: str, start_utc: datetime, end_utc: datetime | None) -> int:
        """Keep the footage of ``[start_utc, end_utc]`` (an event clip) until nothing else is
        left to delete. ``end_utc=None``: open-ended, segments still to come are protected
        until the same id is protected again with an end. Returns segments flagged so far."""
        if self.store.index is None:
            log.error("protect(%s) after the recorder closed: ignored", event_id)
            return 0
        return self.store.event(event_id, to_us(start_utc),
                                None if end_utc is None else to_us(end_utc), protect=True)

    def mark(self, event_id: str, start_utc: datetime, end_utc: datetime | None, motion: bool,
             person: bool) -> int:
        """Flag the segments of ``[start_utc, end_utc]`` as holding motion and/or a person."""
        if self.store.index is None:
            log.error("mark(%s) after the recorder closed: ignored", event_id)
            return 0
        return self.store.event(event_id, to_us(start_utc),
                                None if end_utc is None else to_us(end_utc), motion=motion,
                                person=person)

    def hold(self, name: str, start_utc: datetime, end_utc: datetime, *, owner: str,
             days: float = holds.DEFAULT_DAYS) -> dict[str, Any]:
        """A legal hold (:mod:`node.record.holds`): protect ``[start, end]`` for ``owner`` until
        released or ``days`` from now. Raises :class:`~node.record.holds.HoldError`."""
        expires = holds.check(name, owner, start_utc, end_utc, days, self.clock.utc())
        if self.store.index is None:
            raise holds.HoldError("the recorder is closed")
        n = self.store.hold(name, owner, to_us(start_utc), to_us(end_utc), to_us(expires))
        return {"hold": name, "owner": owner, "segments": n, "expires": _iso(to_us(expires))}

    def release(self, name: str) -> bool:
        """End the hold ``name`` now; False if there is none."""
        if self.store.index is None:
            raise holds.HoldError("the recorder is closed")
        return self.store.release(name)

    def covering(self, start_utc: datetime, end_utc: datetime) -> int:
        """How many recorded segments overlap ``[start, end)``."""
        idx = self.store.index
        return 0 if idx is None else len(idx.range(to_us(start_utc), to_us(end_utc)))

    def holds(self) -> list[dict[str, Any]]:
        idx = self.store.index
        if idx is None:
            return []
        return [{"hold": h["name"], "owner": h["owner"], "start": _iso(h["start_us"]),
                 "end": _iso(h["end_us"]), "expires": _iso(h["expires_us"])} for h in idx.holds()]

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        """Fields for the heartbeat. Cheap (two small queries + statvfs); any thread."""
        idx = self.store.index
        w = self.writer.health()
        if idx is None:  # closed: what the writer knows
            return {"closed": True, "segments_closed": w["segments_closed"],
                    "current_segment": None, "last_error": w["last_error"] or self.last_error}
        tot = idx.totals()
        rate = self.retention.rate()
        try:
            free = self.retention.free_fn(self.root)
        except OSError:
            free = 0
        days = self.retention.projected_days(free, rate)
        return {
            "retention_fault": self.retention.verdict(free, rate),
            "disk_free_bytes": free,
            "footage_bytes": tot["bytes"],
            "segments": tot["segments"],
            "protected_bytes": tot["protected_bytes"],
            "oldest_utc": tot["oldest_start_us"] and _iso(tot["oldest_start_us"]),
            "bitrate_kbps": round(rate * 8 / 1000, 1),
            "retention_days_projected": round(days, 2),
            "retention_target_days": self.retention.policy.max_age_days,
            "retention_ok": days >= self.retention.policy.max_age_days,
            "current_segment": w["current_segment"],
            "segments_closed": w["segments_closed"],
            "last_segment": self.last_closed.name if self.last_closed else None,
            "clock_synced": bool(self.clock.synced()),
            "queue_bytes": self._qbytes,
            "dropped_packets": self.dropped + w["dropped_packets"],
            "discontinuities": w["discontinuities"],
            "disk_full_events": self.disk_full_events,
            "protected_deleted": list(self.protected_deleted),
            "signed": self.signer.enabled,
            "last_error": w["last_error"] or self.last_error,
        }


def _iso(us: int) -> str:
    from node.record.segment import from_us

    return from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_recorder(cfg: Any, clock: Any, free_fn: Any = disk_free) -> Recorder:
    """The app's one call: a :class:`Recorder` from ``cfg.storage`` and ``cfg.record``
    (``free_fn``: free bytes of the card, injected by tests that pretend a card size)."""
    rec = cfg.record
    signer = Signer.none()
    if rec.signing_key:
        key = Path(rec.signing_key)
        if key.exists():
            signer = Signer.from_file(key)
        else:
            log.warning("record.signing_key %s not provisioned yet: segments are not signed", key)
    policy = Policy(max_age_days=rec.max_age_days, headroom_s=rec.headroom_s,
                    min_free_bytes=int(rec.min_free_mb * 1024 * 1024),
                    default_rate=cfg.encoder.bitrate_kbps * 1000 / 8)
    return Recorder(Path(cfg.storage.path), clock, segment_s=cfg.storage.segment_s,
                    frag_s=rec.fragment_s, policy=policy, signer=signer,
                    sweep_s=rec.sweep_s, queue_bytes=int(rec.queue_mb * 1024 * 1024),
                    sync_fragments=rec.sync_fragments, free_fn=free_fn)
