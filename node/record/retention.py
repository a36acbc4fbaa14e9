"""Retention: the ring buffer over the card. Age first, then a free-space floor.

One :meth:`Retention.sweep`:

1. **age** — delete unprotected segments that ended more than ``max_age_days`` ago, oldest
   (lowest sequence number) first; "ago" is measured on synchronised time only (a segment
   written with an untrusted clock is as old as the next trusted segment after it), and not
   at all while the clock itself is unsynchronised;
2. **space** — keep ``free >= floor`` where ``floor = max(min_free_bytes, headroom_s x measured
   byte rate)`` (by default one hour of recording at the rate the node actually writes), but
   the headroom never takes more than half of the *room* the ring has on the card (unprotected
   footage + free): on a card something else has filled, or a small one, the ring keeps at
   least half of what is left above ``min_free_bytes`` instead of deleting every segment as it
   closes
   (``min_free_bytes`` is the hard reserve: below it nothing is kept, and the fault says so).
   Delete the oldest unprotected segments; only when none is left *and* the writer could not
   go on (less free than two recent segments), the oldest *protected* ones (event clips, legal
   holds), each reported (log error + ``protected_deleted`` in the health) because that is
   footage someone asked to keep. The floor alone never costs protected footage: a card that
   something else filled keeps its holds as long as the writer has room.

It also computes the projection the heartbeat carries: how many days of footage the card
holds at the measured rate (``(footage bytes + free - floor) / bytes per day``), and whether
that meets ``max_age_days``.

Deletion runs on the retention thread (see :class:`node.record.recorder.Recorder`), never on
the thread that writes video: an ``unlink`` on an SD card can take tens of milliseconds.
Cost per sweep with nothing to delete: two indexed SQLite queries + one ``statvfs`` (< 5 ms at
43,200 segments, see bench). Thread: the retention thread (or the caller of ``tick``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.record.segment import to_us
from node.record.store import Store

log = logging.getLogger(__name__)

DAY_S = 86_400


@dataclass(frozen=True)
class Policy:
    """What retention keeps. Byte rate: bytes per second written (measured)."""

    max_age_days: float = 30.0
    headroom_s: float = 3600.0
    min_free_bytes: int = 256 << 20
    #: Rate assumed before enough footage exists to measure one (1.2 Mbit/s).
    default_rate: float = 150_000.0


@dataclass
class SweepReport:
    deleted_age: int = 0
    deleted_space: int = 0
    protected_deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    free_bytes: int = 0
    floor_bytes: int = 0
    short_of_space: bool = False
    projected_days: float = 0.0


def disk_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Retention:
    """Deletes footage by age and by free space; see the module doc.

    ``free_fn`` returns free bytes on the card (``statvfs`` by default; injected in tests).
    """

    def __init__(self, store: Store, clock: Any, policy: Policy,
                 free_fn: Callable[[Path], int] = disk_free) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.free_fn = free_fn
        self.last: SweepReport = SweepReport()
        self.protected_deleted_total = 0

    def rate(self) -> float:
        """Measured bytes per second of recent segments (the default before there are any)."""
        assert self.store.index is not None
        r = self.store.index.recent_rate()
        return r if r > 0 else self.policy.default_rate

    def floor(self, rate: float | None = None, free: int | None = None) -> int:
        """The free space to keep, at ``rate`` (measured when None). With ``free`` given, the
        headroom part is capped at half the ring's room (unprotected footage + ``free``: event
        clips and holds are not the ring's to give), never below ``min_free_bytes``; see the
        module doc."""
        r = self.rate() if rate is None else rate
        full = max(self.policy.min_free_bytes, int(self.policy.headroom_s * r))
        if free is None:
            return full
        assert self.store.index is not None
        t = self.store.index.totals()
        room = t["bytes"] - t["protected_bytes"] + free
        return max(self.policy.min_free_bytes, min(full, room // 2))

    def sweep(self, emergency: bool = False) -> SweepReport:
        """Delete by age, then for space. ``emergency`` (the writer hit a full disk): the
        floor is raised to at least two recent segments' worth, whatever the policy says."""
        idx = self.store.index
        assert idx is not None
        rep = SweepReport()
        for name in idx.expired_holds(to_us(self.clock.utc())):
            if self.store.release(name):
                log.info("legal hold %s expired: its footage returns to retention", name)
        cutoff = to_us(self.clock.utc()) - int(self.policy.max_age_days * DAY_S * 1_000_000)
        # Age is judged by synchronised time only: the newest segment written with a trusted
        # clock that is older than the cutoff, and everything recorded before it (lower seq).
        # Footage from a node that booted without time (dated 1970, or an hour off) is never
        # deleted for "age" the moment NTP corrects the clock; only space can take it.
        horizon = idx.age_horizon(cutoff)
        while horizon and self.clock.synced():
            batch = idx.oldest(64, protected=False)
            old = [b for b in batch if b[0] <= horizon]
            for seq, _name, _n, _end in old:
                freed = self.store.delete(seq, "age")  # 0: protected meanwhile, kept
                rep.freed_bytes += freed
                rep.deleted_age += freed > 0
            if len(old) < len(batch) or not batch:
                break
        rate = self.rate()
        free = self.free_fn(self.store.root)
        rep.floor_bytes = self.floor(rate, free)  # room does not change while footage goes
        # what the writer needs to go on: protected footage goes only below it, never merely
        # for the floor (a card filled by something else keeps its holds while footage rings)
        writer_min = 2 * idx.recent_max_bytes()
        if emergency:
            rep.floor_bytes = max(rep.floor_bytes, writer_min)
        while free < rep.floor_bytes:
            victim = idx.oldest(1, protected=False)
            protected = False
            if not victim and free < writer_min:
                victim = idx.oldest(1, protected=True)
                protected = True
            if not victim:
                rep.short_of_space = True
                break
            seq, name, _n, _end = victim[0]
            freed = self.store.delete(seq, "space-protected" if protected else "space",
                                      allow_protected=protected)
            rep.freed_bytes += freed
            rep.deleted_space += freed > 0
            if protected and freed:
                rep.protected_deleted.append(name)
                self.protected_deleted_total += 1
                log.error("card full: deleted PROTECTED segment %s (nothing unprotected left)", name)
            free = self.free_fn(self.store.root)
        rep.free_bytes = free
        if rep.deleted_age or rep.deleted_space:
            idx.prune_tombstones()
            self.store.compact_journal()
            log.info("retention: %d by age, %d for space, %.1f MB freed", rep.deleted_age,
                     rep.deleted_space, rep.freed_bytes / 1e6)
        rep.projected_days = self.projected_days(free, rate)
        self.last = rep
        return rep

    def verdict(self, free: int, rate: float) -> str | None:
        """Why footage is not kept as long as it should be, in words for the heartbeat's
        ``retention`` fault (None: it is). Each cause has its own text: nothing kept at all,
        protected footage deleted or filling the card, or a card short of the target. Protected
        segments deleted earlier are named only while the card is still short: once it has room
        again (a foreign file removed, holds released) the fault clears; ``protected_deleted`` in
        the recorder's health keeps their names."""
        assert self.store.index is not None
        t = self.store.index.totals()
        floor = self.floor(rate, free)
        room = t["bytes"] + free  # what footage can use on this card
        mb = 1e6
        lost = (f"{self.protected_deleted_total} protected segment(s) (event clips, legal holds) "
                "were deleted to keep recording") if self.protected_deleted_total else ""
        if room <= floor:
            return (f"no footage is kept: every segment is deleted as it closes, because the "
                    f"free-space reserve ({floor / mb:.0f} MB, record.min_free_mb) is more than the "
                    f"{room / mb:.0f} MB footage can use on this card (footage + free); free the card "
                    "of other files, lower the reserve or fit a larger card" + (f"; {lost}" if lost else ""))
        short = bool(t["protected_bytes"]) and t["protected_bytes"] >= room - floor
        # the next segments would cost protected footage again (nothing else left to delete)
        pressed = free + t["bytes"] - t["protected_bytes"] < floor + 2 * self.store.index.recent_max_bytes()
        if lost and (short or pressed):  # a deletion past is a fault while the card is short
            return f"protected footage alone filled the card: {lost}; release holds or fit a larger card"
        if short:
            return (f"protected footage ({t['protected_bytes'] / mb:.0f} MB of event clips and legal "
                    "holds) fills the card: new footage is deleted as it closes; release holds or "
                    "fit a larger card")
        days, target = self.projected_days(free, rate), self.policy.max_age_days
        if days < target:
            held = f"{days:.1f} days" if days >= 1 else f"{days * 24:.1f} h" if days * 24 >= 1 \
                else f"{days * 1440:.0f} min"
            return f"card holds ~{held} at the current bitrate, target {target:g} days"
        return None

    def projected_days(self, free: int, rate: float) -> float:
        """Days of footage the card holds at ``rate``: what is kept plus what still fits."""
        assert self.store.index is not None
        kept = self.store.index.totals()["bytes"]
        usable = max(0, kept + free - self.floor(rate, free))
        return usable / (rate * DAY_S) if rate > 0 else float("inf")
