"""The node's main thread once it runs: feed the systemd watchdog while the node is healthy,
tick day/night, publish the heartbeat and set the status LED from it.

Each step is guarded: a failure becomes a fault (``daynight``, ``heartbeat``), cleared when
the step works again, and never ends the loop. The loop ends when ``stop`` is set (SIGTERM,
Ctrl-C), or when a finite source has ended; the caller then stops the node.

Thread: the main thread (:meth:`MainLoop.run`); :func:`healthy` from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: A live camera silent this long stops the watchdog feed: systemd restarts the node.
STALL_RESTART_S = 120.0


def healthy(pipeline: Any, now: float) -> bool:
    """For the systemd watchdog: workers alive, the encoder not stuck, and frames arriving
    (a camera silent for ``STALL_RESTART_S`` gets the process restarted by systemd)."""
    return pipeline.alive() and not pipeline.stuck(now) and pipeline.stalled_for(now) < STALL_RESTART_S


class MainLoop:
    """``heartbeat``: builds the heartbeat (:meth:`node.diagnostics.Diagnostics.heartbeat`);
    ``daynight_step``: one day/night decision; ``led``: the status LED or None."""

    def __init__(self, *, clock: Any, notifier: Any, faults: Any, pipeline: Any, link: Any,
                 heartbeat: Callable[[], dict[str, Any]], daynight_step: Callable[[], Any],
                 led: Any, heartbeat_s: float, daynight_s: float,
                 every_tick: dict[str, Callable[[], Any]] | None = None) -> None:
        self._clock, self._notifier, self._faults = clock, notifier, faults
        self._pipeline, self._link, self._heartbeat = pipeline, link, heartbeat
        self._daynight_step, self._led = daynight_step, led
        self._heartbeat_s, self._daynight_s = heartbeat_s, daynight_s
        self._every_tick = dict(every_tick or {})  # {fault area: step}, e.g. live-session expiry

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set, or a finite source (``camera.loop = false``) has ended and
        everything it gave is recorded: then one last heartbeat (its fault says why) and out."""
        period = self._heartbeat_s
        now = self._clock.monotonic()
        next_beat = now + min(1.0, period)
        next_light = now
        tick = min(1.0, period / 2, (self._notifier.watchdog_s or 2.0) / 2)
        while not stop.wait(tick):
            now = self._clock.monotonic()
            if healthy(self._pipeline, now):
                self._notifier.watchdog()
            for area, step in self._every_tick.items():
                self._guarded(area, step)
            if now >= next_light:
                next_light = now + self._daynight_s
                self._guarded("daynight", self._daynight_step)
            if now >= next_beat:
                next_beat = now + period
                self._guarded("heartbeat", self.publish_heartbeat)
            if self._pipeline.source_ended and self._pipeline.join(0):
                self._guarded("heartbeat", self.publish_heartbeat)
                log.warning("the source ended (camera.loop = false): the run ends")
                return

    def publish_heartbeat(self) -> dict[str, Any]:
        """Publish the heartbeat (QoS 0) and show its state on the LED."""
        hb = self._heartbeat()
        self._link.publish(self._link.topics.heartbeat, hb, qos=0)
        if self._led is not None:
            from hw.gpio import led_code_for

            self._led.set_code(led_code_for(
                booting=False, fault=bool(hb["faults"]), broker_connected=self._link.connected,
                recording=hb["fps_out"] > 0))
        return hb

    def _guarded(self, area: str, step: Callable[[], Any]) -> None:
        """Run a step; a failure becomes a fault, never the end of the node."""
        try:
            step()
            if area in self._faults.items:
                self._faults.set(area, None)
        except Exception as exc:
            log.exception("%s failed", area)
            self._faults.set(area, f"{type(exc).__name__}: {exc}")
