"""What the node tells about itself: the heartbeat (small, every ``mqtt.heartbeat_s``) and the
full diagnostics (on request, ``cmd/diag``).

Both read the live components without locking them for long: counters, ``health()`` of the
recorder, analyzer and link, the platform probe's cheap readers (temperatures, throttling).
Thread: the main thread (heartbeat) and the MQTT thread (diag).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from node import __version__, health
from node.link import topics as t

if TYPE_CHECKING:
    from node.app import Node


class Diagnostics:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._last: tuple[float, int, int] | None = None
        self._last_fps: tuple[float, float] | None = None

    def _rates(self, now: float, n_in: int, n_out: int) -> tuple[float, float]:
        """fps over the interval since the previous heartbeat."""
        last, self._last = self._last, (now, n_in, n_out)
        if last is None or now <= last[0]:
            return 0.0, 0.0
        dt = now - last[0]
        return round((n_in - last[1]) / dt, 2), round((n_out - last[2]) / dt, 2)

    def temperatures(self) -> dict[str, float]:
        p = self.node.platform
        return p.temperatures() if p is not None else {}

    def heartbeat(self, update_rates: bool = True) -> dict[str, Any]:
        """The heartbeat. Only the periodic heartbeat moves the fps window (``diag`` reads it)."""
        n = self.node
        c = n.pipeline.counters
        now = n.clock.monotonic()
        fps_in, fps_out = (self._rates(now, c.frames_in, c.frames_encoded) if update_rates
                           else (self._last_fps if self._last_fps else (0.0, 0.0)))
        if update_rates:
            self._last_fps = (fps_in, fps_out)
        rec = n.recorder.health()
        hb: dict[str, Any] = {
            "node_id": n.cfg.node.id,
            "version": __version__,
            "heartbeat_s": n.cfg.mqtt.heartbeat_s,
            "uptime_s": round(now - n._started_mono, 1),
            "utc": t.iso(n.clock.utc()),
            "clock_synced": n.clock.synced(),
            "fps_in": fps_in,
            "fps_out": fps_out,
            "frames_in": c.frames_in,
            "frames_dropped": n.pipeline.encode_q.dropped,
            "encoder": getattr(n.pipeline.encoder, "name", None),
            "disk_free_mb": health.disk_free_mb(n.cfg.storage.path),
            "retention_days": rec.get("retention_days_projected"),
            "cpu_load": health.cpu_load(),
            "temperatures_c": self.temperatures(),
            "memory": health.memory(),
            "daynight": n.daynight.status(),
            "recorder": rec,
            "link": n.link.health(),
            "faults": self.faults(rec),
        }
        if n.platform is not None:
            throttled = n.platform.throttled()
            if throttled is not None:
                hb["throttled"] = throttled
        if n.analyzer is not None:
            hb["vision"] = n.analyzer.health()
        if getattr(n, "budget", None) is not None:
            hb["budget"] = n.budget.health()
        return hb

    def faults(self, rec: dict[str, Any] | None = None) -> dict[str, str]:
        """Current faults, plus the recorder's own error and a retention shortfall."""
        n = self.node
        out = n.faults.snapshot()
        rec = rec if rec is not None else n.recorder.health()
        if rec.get("last_error"):
            out["storage"] = str(rec["last_error"])
        days, target = rec.get("retention_days_projected"), n.cfg.record.max_age_days
        budget = getattr(n, "budget", None)
        if budget is not None:  # the budget holds the target; a fault only past its floor
            if (why := budget.fault()) is not None:
                out["retention"] = why
        elif isinstance(days, int | float) and days < target:
            out["retention"] = f"card holds ~{days:.1f} days at the current bitrate, target {target:g}"
        now = n.clock.monotonic()
        stalled = n.pipeline.stalled_for(now, since_start=True)
        if stalled > max(10.0, 5.0 / n.cfg.camera.fps):
            out["camera"] = f"no frame from the camera for {stalled:.0f} s"
        for name in n.pipeline.dead_threads():
            out[f"thread:{name}"] = "stopped unexpectedly"
        if n.daynight.error:
            out["daynight"] = n.daynight.error
        if n.link.config_error:
            out["link"] = n.link.config_error
        return out

    def full(self) -> dict[str, Any]:
        """Everything a technician needs on the pole or from the station."""
        n = self.node
        out = self.heartbeat(update_rates=False)
        out["config"] = dataclasses.asdict(n.cfg)
        out["config"]["mqtt"]["password"] = "***" if n.cfg.mqtt.password else ""
        out["platform"] = n.platform.describe() if n.platform is not None else None
        out["encoder_selection"] = n.encoder_report.as_dict() if n.encoder_report is not None else None
        out["camera"] = n.pipeline.source.describe() if n.pipeline.source is not None else None
        out["gpio"] = n.devices.describe() if n.devices is not None else None
        out["queues"] = {"encode": len(n.pipeline.encode_q), "encode_dropped": n.pipeline.encode_q.dropped,
                         "analysis": len(n.pipeline.analysis_q),
                         "analysis_dropped": n.pipeline.analysis_q.dropped}
        out["commands"] = {"handled": n.commands.handled, "rejected": n.commands.rejected}
        return out
