"""What the node tells about itself: the heartbeat (small, every ``mqtt.heartbeat_s``) and the
full diagnostics (on request, ``cmd/diag``).

Both read the live components without locking them for long: counters, ``health()`` of the
recorder, analyzer and link, the platform probe's cheap readers (temperatures, throttling).
Thread: the main thread (heartbeat) and the MQTT thread (diag).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hw.redact import redact_obj
from node import __version__, health
from node.link import topics as t


class Diagnostics:
    """Reads the parts it is handed (each only through its ``health()``/``describe()``,
    counters and cheap readers): ``cfg`` (the whole config: ``full`` shows it, secrets masked),
    ``clock``, ``started_mono`` (the node's start on ``clock``), ``faults``, ``pipeline``,
    ``recorder``, ``daynight``, ``link``, ``router`` (command counters); the parts built at
    start — ``platform``, ``devices``, ``analyzer`` — may be None; ``encoder_report`` gives the
    encoder choice once the encoder thread made it (None before), ``budget`` the storage budget
    (:class:`node.record.budget.BudgetController`, None when the rate is fixed).
    """

    def __init__(self, *, cfg: Any, clock: Any, started_mono: float, faults: Any, pipeline: Any,
                 recorder: Any, daynight: Any, link: Any, router: Any, platform: Any = None,
                 devices: Any = None, analyzer: Any = None,
                 encoder_report: Callable[[], Any] = lambda: None, live: Any = None,
                 budget: Callable[[], Any] = lambda: None) -> None:
        self.cfg, self.clock, self.started_mono, self._faults = cfg, clock, started_mono, faults
        self.pipeline, self.recorder, self.daynight, self.link = pipeline, recorder, daynight, link
        self.router, self.platform, self.devices, self.analyzer = router, platform, devices, analyzer
        self.encoder_report = encoder_report
        self.live = live  # node.live.manager.LiveManager: the heartbeat's live state and data used
        #: the storage budget once the encoder thread built it (None: fixed rate, passthrough)
        self.budget = budget
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
        p = self.platform
        return p.temperatures() if p is not None else {}

    def heartbeat(self, update_rates: bool = True) -> dict[str, Any]:
        """The heartbeat. Only the periodic heartbeat moves the fps window (``diag`` reads it)."""
        c = self.pipeline.counters
        now = self.clock.monotonic()
        fps_in, fps_out = (self._rates(now, c.frames_in, c.frames_encoded) if update_rates
                           else (self._last_fps if self._last_fps else (0.0, 0.0)))
        if update_rates:
            self._last_fps = (fps_in, fps_out)
        rec = self.recorder.health()
        hb: dict[str, Any] = {
            "node_id": self.cfg.node.id,
            "version": __version__,
            "heartbeat_s": self.cfg.mqtt.heartbeat_s,
            "uptime_s": round(now - self.started_mono, 1),
            "utc": t.iso(self.clock.utc()),
            "clock_synced": self.clock.synced(),
            "fps_in": fps_in,
            "fps_out": fps_out,
            "frames_in": c.frames_in,
            "frames_dropped": self.pipeline.encode_q.dropped,
            "encoder": getattr(self.pipeline.encoder, "name", None),
            "disk_free_mb": health.disk_free_mb(self.cfg.storage.path),
            "retention_days": rec.get("retention_days_projected"),
            "cpu_load": health.cpu_load(),
            "temperatures_c": self.temperatures(),
            "memory": health.memory(),
            "daynight": self.daynight.status(),
            "recorder": rec,
            "link": self.link.health(),
            "faults": self.faults(rec),
        }
        if self.platform is not None:
            throttled = self.platform.throttled()
            if throttled is not None:
                hb["throttled"] = throttled
        if self.analyzer is not None:
            hb["vision"] = self.analyzer.health()
        if self.live is not None:
            hb["live"] = self.live.status()
        if (budget := self.budget()) is not None:
            hb["budget"] = budget.health()
        return hb

    def faults(self, rec: dict[str, Any] | None = None) -> dict[str, str]:
        """Current faults, plus the recorder's own error and a retention shortfall."""
        out = self._faults.snapshot()
        rec = rec if rec is not None else self.recorder.health()
        if rec.get("last_error"):
            out["storage"] = str(rec["last_error"])
        verdict = rec.get("retention_fault")
        budget = self.budget()
        if budget is not None and verdict and verdict.startswith("card holds ~"):
            # a card short at the rate measured so far: the budget is lowering that rate; only
            # when even its quality floor cannot keep the target is it a fault (its numbers)
            verdict = budget.fault()
        elif budget is not None and not verdict:
            verdict = budget.fault()
        if verdict:  # why footage is not kept as long as it should be
            out["retention"] = str(verdict)
        now = self.clock.monotonic()
        stalled = self.pipeline.stalled_for(now, since_start=True)
        if stalled > max(10.0, 5.0 / self.cfg.camera.fps):
            out["camera"] = f"no frame from the camera for {stalled:.0f} s"
        for name in self.pipeline.dead_threads():
            out[f"thread:{name}"] = "stopped unexpectedly"
        if self.daynight.error:
            out["daynight"] = self.daynight.error
        if self.link.config_error:
            out["link"] = self.link.config_error
        return out

    def full(self) -> dict[str, Any]:
        """Everything a technician needs on the pole or from the station."""
        cfg, pipe, report = self.cfg, self.pipeline, self.encoder_report()
        out = self.heartbeat(update_rates=False)
        out["config"] = dataclasses.asdict(cfg)
        out["config"] = redact_obj(out["config"])  # passwords, and credentials in camera URLs
        out["platform"] = self.platform.describe() if self.platform is not None else None
        out["encoder_selection"] = report.as_dict() if report is not None else None
        out["camera"] = pipe.source.describe() if pipe.source is not None else None
        out["gpio"] = self.devices.describe() if self.devices is not None else None
        out["queues"] = {"encode": len(pipe.encode_q), "encode_dropped": pipe.encode_q.dropped,
                         "analysis": len(pipe.analysis_q), "analysis_dropped": pipe.analysis_q.dropped}
        out["commands"] = {"handled": self.router.handled, "rejected": self.router.rejected}
        return out
