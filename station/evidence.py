"""Evidence for a case: ``camnode-station evidence --event ID --window 5m -o CASE_DIR``.

For the event's pole (and any ``poles`` named), over [event start − window, event end +
window]:

1. **hold** — ``cmd/hold`` puts the range under legal hold on the node (retention keeps it);
2. **clip** — pulled over the existing ``cmd/clip`` transfer (:func:`station.clips.fetch_clip`);
3. **verify** — against the node's public key **from the station's inventory**, never a key
   the manifest carries: a clip altered by one byte, a manifest re-signed with another key, or
   a pole without a key in the inventory is refused with the reason (its files go to
   ``refused/``, never next to the verified ones);

then the case folder gets the archived snapshots of the events in the window on those poles,
``case.json`` (what was asked, by whom, every file with its SHA-256, every verdict), an
``index.html`` to hand over, and the archive's audit table one row per command and one for the
case. Thread: the caller's; ``via`` is a :class:`~station.connect.Connection` (a session per
request, as ``camnode-station clip``) or a program's running session (the console's).
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from node.link.topics import iso
from node.record.verify import verify_clip
from station.archive.db import writing
from station.archive.ingest import media_path
from station.archive.inventory import get_node
from station.archive.query import EVENT_COLUMNS, get_event, row_to_dict
from station.archive.schema import commands, events
from station.connect import StationError
from station.mqtt_session import Via


class EvidenceError(RuntimeError):
    """The case cannot be made at all (unknown event, folder in use...)."""


@dataclass
class PoleEvidence:
    node: str
    held: bool = False
    clip: str | None = None
    manifest: str | None = None
    sha256: str | None = None
    verified: bool = False
    problems: list[str] = field(default_factory=list)


def verify_with_inventory(engine: Engine, node: str, clip: Path, manifest: Path) -> list[str]:
    """Problems of a clip + manifest checked against ``node``'s key in the inventory ([] = good)."""
    inv = get_node(engine, node)
    key = (inv or {}).get("pubkey") or ""
    if not key:
        return [f"no public key for {node} in the station's inventory: import provisioning's "
                "inventory.csv (a key carried in the manifest is never trusted)"]
    try:
        claimed = json.loads(manifest.read_text()).get("node_id")
    except (OSError, ValueError) as exc:
        return [f"manifest unreadable: {exc}"]
    problems = list(verify_clip(clip, manifest, public_hex=key).problems)
    if claimed not in (None, node):
        problems.append(f"manifest names node {claimed!r}, not {node}")
    return problems


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _audit(engine: Engine, node: str, command: str, actor: str, args: dict, reply: Any, now: datetime,
           request: str | None = None) -> None:
    with writing(engine) as conn:
        conn.execute(insert(commands).values(request=request, node=node, command=command, actor=actor,
                                             sent=now, args=args, reply=reply, replied=now))


def case_name(event_id: str) -> str:
    """The legal hold's name for a case (at most 64 characters, unique per event: a hold of the
    same name replaces the one before on the node): ``case-<event id>``, or, for a long id, its
    start and a digest of the whole."""
    name = f"case-{event_id}"
    if len(name) <= 64:
        return name
    return f"case-{event_id[:40]}-{hashlib.sha256(event_id.encode()).hexdigest()[:16]}"


def collect(engine: Engine, media_dir: Path, via: Via, event_id: str, window: timedelta,
            out_dir: Path, *, poles: list[str] | None = None, actor: str = "", clock,
            idle_s: float = 60.0) -> dict[str, Any]:
    from station.clips import fetch_clip
    from station.command import request

    ev = get_event(engine, event_id)
    if ev is None:
        raise EvidenceError(f"no event {event_id!r} in the archive")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EvidenceError(f"{out_dir} is not empty: a case folder is never overwritten")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = datetime.fromisoformat(ev["start"].replace("Z", "+00:00")) - window
    end = datetime.fromisoformat((ev["end"] or ev["start"]).replace("Z", "+00:00")) + window
    case_id = case_name(event_id)
    now = clock.utc().replace(tzinfo=None)
    results = []
    for node in dict.fromkeys([ev["node"], *(poles or [])]):
        pe = PoleEvidence(node)
        span = {"start": iso(start), "end": iso(end)}
        try:
            reply = request(via, node, "hold", {**span, "name": case_id,
                                                 "owner": actor or "camnode-station evidence"}, timeout_s=15)
            pe.held = bool(reply.get("ok"))
            if not pe.held:
                pe.problems.append(f"hold refused: {reply.get('error')}")
        except (StationError, OSError) as exc:
            reply = {"ok": False, "error": str(exc)}
            pe.problems.append(f"hold: {exc}")
        _audit(engine, node, "hold", actor, {**span, "name": case_id, "owner": actor}, reply, now)
        try:
            clip, manifest = fetch_clip(via, node, span["start"], span["end"], out_dir / "clips" / node,
                                        idle_s=idle_s)
        except (StationError, OSError) as exc:
            pe.problems.append(f"clip: {exc}")
            _audit(engine, node, "clip", actor, span, {"ok": False, "error": str(exc)}, now)
            results.append(pe)
            continue
        problems = verify_with_inventory(engine, node, clip, manifest)
        if problems:  # never beside verified footage
            dest = out_dir / "refused" / node
            dest.mkdir(parents=True, exist_ok=True)
            clip = Path(shutil.move(str(clip), dest / clip.name))
            manifest = Path(shutil.move(str(manifest), dest / manifest.name))
        pe.problems += problems
        pe.verified = not problems
        pe.clip, pe.manifest = str(clip.relative_to(out_dir)), str(manifest.relative_to(out_dir))
        pe.sha256 = _sha256(clip)
        _audit(engine, node, "clip", actor, span, {"ok": True, "sha256": pe.sha256, "verified": pe.verified,
                                                   "problems": problems}, now)
        results.append(pe)
    snaps = _snapshots(engine, media_dir, [r.node for r in results], start, end, out_dir)
    case = {"case": case_id, "event": ev, "window": {"start": iso(start), "end": iso(end)},
            "actor": actor, "created": iso(now), "poles": [asdict(r) for r in results],
            "snapshots": snaps}
    (out_dir / "case.json").write_text(json.dumps(case, indent=2, sort_keys=True))
    (out_dir / "index.html").write_text(index_page(case))
    asked = {"event": event_id, "window": case["window"], "poles": [r.node for r in results],
             "folder": str(out_dir)}
    _audit(engine, ev["node"], "evidence", actor, asked,
           {"ok": all(r.verified for r in results), "case.json": _sha256(out_dir / "case.json")}, now)
    return case


def _snapshots(engine: Engine, media_dir: Path, poles: list[str], start: datetime, end: datetime,
               out_dir: Path) -> list[dict[str, Any]]:
    s, e = start.replace(tzinfo=None), end.replace(tzinfo=None)
    with engine.connect() as conn:
        rows = [row_to_dict(r) for r in conn.execute(
            select(*EVENT_COLUMNS).where(events.c.node.in_(poles), events.c.start >= s, events.c.start <= e,
                                         events.c.snapshot_sha.is_not(None)).order_by(events.c.start))]
    out = []
    for r in rows:
        src = media_path(media_dir, r["snapshot_sha"])
        if not src.exists():
            continue
        dest = out_dir / "snapshots" / f"{r['id']}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        out.append({"event": r["id"], "node": r["node"], "start": r["start"], "label": r["label"],
                    "file": str(dest.relative_to(out_dir)), "sha256": r["snapshot_sha"]})
    return out


def index_page(case: dict[str, Any]) -> str:
    e = html.escape
    ev = case["event"]
    rows = []
    for p in case["poles"]:
        verdict = "verified against the inventory key" if p["verified"] else \
            "REFUSED: " + "; ".join(p["problems"])
        link = f'<a href="{e(p["clip"])}">{e(Path(p["clip"]).name)}</a>' if p["clip"] else "—"
        rows.append(f"<tr><td>{e(p['node'])}</td><td>{'yes' if p['held'] else 'no'}</td><td>{link}</td>"
                    f"<td><code>{e(p['sha256'] or '')}</code></td><td>{e(verdict)}</td></tr>")
    snaps = "".join(f'<figure><img src="{e(s["file"])}" width="320"><figcaption>{e(s["node"])} '
                    f'{e(s["start"])} {e(s["label"])}</figcaption></figure>' for s in case["snapshots"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(case['case'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #999;padding:4px 8px}}
table{{border-collapse:collapse}}figure{{display:inline-block;margin:8px}}</style></head>
<body><h1>Evidence {e(case['case'])}</h1>
<p>Event <b>{e(ev['id'])}</b> ({e(ev['label'] or ev['kind'])}) on {e(ev['node'])} at {e(ev['start'])} UTC.
Window {e(case['window']['start'])} – {e(case['window']['end'])} UTC. Collected {e(case['created'])} UTC
by {e(case['actor'] or 'unknown')}.</p>
<table><tr><th>pole</th><th>legal hold</th><th>clip</th><th>SHA-256</th><th>verification</th></tr>
{''.join(rows)}</table>
<h2>Snapshots</h2>{snaps or '<p>none archived in the window</p>'}
<p>Every clip verifies offline: <code>camnode verify CLIP --manifest CLIP.json --pubkey KEY</code>, KEY
from the station's inventory. Details: <a href="case.json">case.json</a>.</p></body></html>
"""
