"""The node's commands (see :mod:`node.link.router` for the envelope and error replies).

    help                               list commands
    diag                               full diagnostics (config with secrets masked, platform,
                                       encoder choice and rejections, camera, GPIO, queues...)
    ir        {"mode": "night"|"day"|"auto", "minutes": 30}
                                       technician override of day/night (IR on = night); it
                                       expires after ``minutes`` (at most daynight.override_max_min;
                                       more is refused, never cut)
    rebaseline                         reset the motion background now (after moving the camera)
    hold      {"start": UTC, "end": UTC, "owner": who, "name": ..., "days": 30}
                                       legal hold: protect footage of a range (at most 7 days)
                                       from retention for ``days`` (default 30, at most 365)
    release   {"name": ...}            end a legal hold now
    holds                              list the legal holds (owner, range, expiry)
    restart   {"reason": ...}          a clean stop that systemd turns into a restart
                                       (registered by the composition root, which owns the stop)
    clip      {"start": UTC, "end": UTC}
                                       export footage of a range (remuxed MP4, signed manifest)
                                       and stream it to the station on ``clip/<request>/<n>``
                                       chunks, then ``clip/<request>/done`` (see docs/mqtt.md)
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from node.link.router import CommandError, CommandRouter, expect_keys
from node.link.topics import parse_time

log = logging.getLogger(__name__)

#: Longest clip one request may export (≈ 45 MB at 1.2 Mbit/s for 5 min; 30 min ≈ 270 MB).
MAX_CLIP_S = 30 * 60
#: Chunk size on the wire: small enough for any broker's message limit, large for throughput.
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class CommandParts:
    """The parts of the node the commands act on (and nothing else)."""

    node_id: str
    storage_path: Path  # where the footage is; clip exports are prepared beside it
    link: Any  # topics, publish, publish_paced, last_error
    recorder: Any  # hold, signer
    daynight: Any  # force
    diagnostics: Any  # full
    faults: Any  # set("clip", ...)
    analyzer: Any = None  # rebaseline; None when analysis is off


def _stream_clip(parts: CommandParts, request: str, start: datetime, end: datetime,
                 busy: threading.Lock) -> None:
    """Worker thread: export (remux, no re-encode) to a temporary file beside the footage, send
    it in paced chunks, then ``done`` with the manifest, size and SHA-256 — or the error. The
    range is put under a legal hold first, so retention cannot delete it mid-export (footage
    the police pulled is evidence)."""
    from node.record.export import ExportRefused, export_clip

    topics = parts.link.topics
    done: dict[str, Any] = {"request": request, "ok": False}
    work: Path | None = None
    hold = f"clip-{request}"
    try:
        # kept until the export is sent (a day at most, should the node stop mid-export)
        parts.recorder.hold(hold, start, end, owner=f"clip {request}", days=1)
        work = Path(tempfile.mkdtemp(prefix="clip-", dir=parts.storage_path))
        out = work / f"{parts.node_id}-{start.strftime('%Y%m%dT%H%M%SZ')}-{end.strftime('%H%M%SZ')}.mp4"
        manifest = export_clip(parts.storage_path, start, end, out,
                               signer=parts.recorder.signer, node_id=parts.node_id)
        sha, n = hashlib.sha256(), 0
        with out.open("rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                if not parts.link.publish_paced(topics.clip(request, str(n)), chunk):
                    raise OSError(f"chunk {n} not delivered: {parts.link.last_error or 'link down'}")
                sha.update(chunk)
                n += 1
        done.update(ok=True, name=out.name, chunks=n, bytes=out.stat().st_size, sha256=sha.hexdigest(),
                    manifest=manifest)
        parts.faults.set("clip", None)
    except ExportRefused as exc:  # e.g. the footage went meanwhile: an answer, not a node fault
        done["error"] = str(exc)
    except Exception as exc:  # ExportError, OSError, a PyAV error on a damaged segment...
        done["error"] = f"{type(exc).__name__}: {exc}"
        log.warning("clip %s failed: %s", request, exc)
        parts.faults.set("clip", f"last export failed: {done['error']}")
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        try:  # the station has its copy (or the export failed): no lasting hold per request
            parts.recorder.release(hold)
        except Exception:
            log.exception("clip %s: its hold could not be released (it expires in a day)", request)
        busy.release()
    try:
        payload = json.dumps(done, default=str).encode()
        if not parts.link.publish_paced(topics.clip(request, "done"), payload):
            parts.link.publish(topics.reply("clip"), {"request": request, "ok": False,
                                                     "error": done.get("error", "done not delivered")},
                              qos=1)
    except Exception:
        log.exception("clip %s: the outcome could not be sent", request)


def _utc(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise CommandError(f"{name} must be an ISO 8601 time string with a zone")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise CommandError(f"{name}: {exc}") from None


def register_node_commands(r: CommandRouter, parts: CommandParts) -> None:
    """Register the node's commands on ``r``, acting on ``parts``."""

    def diag(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, set())
        return parts.diagnostics.full()

    def ir(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, {"mode", "minutes"})
        mode = args.get("mode")
        if mode not in ("day", "night", "auto"):
            raise CommandError(f"mode must be 'night' (IR on), 'day' (IR off) or 'auto', got {mode!r}")
        minutes = args.get("minutes")
        longest = parts.daynight.override_max_s / 60
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int | float)
                                    or not 0 < minutes <= longest):
            # refused, never silently cut: the technician must know when it ends
            raise CommandError(f"minutes must be a number in (0, {longest:g}] "
                               "(daynight.override_max_min)")
        return parts.daynight.force(mode, minutes)

    def rebaseline(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, set())
        if parts.analyzer is None:
            raise CommandError("motion detection is not running")
        parts.analyzer.rebaseline()
        return {"rebaselined": True}

    def hold(args: dict[str, Any]) -> dict[str, Any]:
        from node.record.holds import DEFAULT_DAYS, HoldError

        expect_keys(args, {"start", "end", "name", "owner", "days"})
        start, end = _utc(args.get("start"), "start"), _utc(args.get("end"), "end")
        owner, name, days = args.get("owner"), args.get("name"), args.get("days", DEFAULT_DAYS)
        if not isinstance(owner, str):
            raise CommandError("owner (who asks for the hold) is required, as a string")
        if name is not None and not isinstance(name, str):
            raise CommandError("name must be a string")
        if isinstance(days, bool) or not isinstance(days, int | float):
            raise CommandError("days must be a number")
        try:
            return parts.recorder.hold(name or start.strftime("%Y%m%dT%H%M%SZ"), start, end,
                                       owner=owner, days=float(days))
        except HoldError as exc:
            raise CommandError(str(exc)) from None

    def release(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, {"name"})
        name = args.get("name")
        if not isinstance(name, str):
            raise CommandError("name of the hold to release is required")
        if not parts.recorder.release(name):
            raise CommandError(f"no hold named {name!r}")
        return {"released": name}

    def holds(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, set())
        return {"holds": parts.recorder.holds()}

    clip_busy = threading.Lock()  # one export at a time: memory, card space and uplink

    def clip(args: dict[str, Any]) -> dict[str, Any]:
        expect_keys(args, {"start", "end"})
        start, end = _utc(args.get("start"), "start"), _utc(args.get("end"), "end")
        if end <= start:
            raise CommandError("end must be after start")
        if (end - start).total_seconds() > MAX_CLIP_S:
            raise CommandError(f"a clip over MQTT is at most {MAX_CLIP_S // 60} minutes; ask for parts")
        if not parts.recorder.covering(start, end):  # a refused request: a reply, not a fault
            raise CommandError(f"no footage between {start.isoformat()} and "
                               f"{end.isoformat()}")
        if not clip_busy.acquire(blocking=False):
            raise CommandError("busy: another clip is being exported; ask again when it is done")
        request = secrets.token_hex(6)
        threading.Thread(target=_stream_clip, args=(parts, request, start, end, clip_busy),
                         name="clip-export", daemon=True).start()
        return {"request": request, "topic": parts.link.topics.clip(request, "#"),
                "chunk_bytes": CHUNK_BYTES}

    r.register("diag", diag, "full diagnostics of this node")
    r.register("clip", clip, "export {start, end} (UTC) and stream it on clip/<request>/...")
    r.register("ir", ir, "IR override: {mode: night|day|auto, minutes}")
    r.register("rebaseline", rebaseline, "reset the motion background now")
    r.register("hold", hold, "protect footage of {start, end, owner[, name, days]} from deletion")
    r.register("release", release, "end the legal hold {name}")
    r.register("holds", holds, "list legal holds")
