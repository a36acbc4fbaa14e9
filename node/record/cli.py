"""CLI subcommands of the recording feature: ``storage plan``, ``clip``, ``verify``.

``node.cli`` calls :func:`register` with its subparsers. Every command returns an exit code:
0 ok, 1 a failed check or a runtime failure, 2 a bad config or bad arguments.
Thread: the CLI's main thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.config import ConfigError, load_config


def _utc(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r} (e.g. 2026-03-01T12:00:00Z)") \
            from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _fail(msg: str, code: int) -> int:
    print(f"camnode: {msg}", file=sys.stderr)
    return code


def _signer(cfg: Any):
    from node.record.integrity import Signer

    key = cfg.record.signing_key
    return Signer.from_file(key) if key and Path(key).exists() else Signer.none()


def cmd_plan(args: argparse.Namespace) -> int:
    from node.record.capacity import parse_resolution, parse_size, plan

    try:
        cfg = load_config(args.config) if args.config else None
        card = parse_size(args.card)
        width, height = parse_resolution(args.resolution) if args.resolution else (
            (cfg.camera.width, cfg.camera.height) if cfg else (1920, 1080))
        fps = args.fps or (cfg.camera.fps if cfg else 15.0)
        source = "given"
        if args.bitrate:
            bitrate = parse_size(args.bitrate)
        elif cfg is not None and (Path(cfg.storage.path) / "index.db").exists():
            from node.record.index import Index

            idx = Index(Path(cfg.storage.path) / "index.db")
            rate = idx.recent_rate(60)
            idx.close()
            if rate <= 0:
                return _fail("no recorded footage to measure a bitrate from; give --bitrate", 2)
            bitrate, source = rate * 8, "measured on this node"
        elif cfg is not None:
            bitrate, source = cfg.encoder.bitrate_kbps * 1000.0, "configured"
        else:
            return _fail("give --bitrate (or --config of a node that has recorded)", 2)
        target = args.days or (cfg.record.max_age_days if cfg else 30.0)
        p = plan(card, bitrate, width, height, fps, target_days=target,
                 reserve_bytes=parse_size(args.reserve),
                 headroom_s=cfg.record.headroom_s if cfg else 3600.0)
    except ConfigError as exc:
        return _fail(f"config error: {exc}", 2)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.json:
        print(json.dumps(p.__dict__ | {"bitrate_source": source}, indent=2))
    else:
        print("\n".join(p.lines()))
        print(f"(bitrate {source})")
    return 0


def cmd_clip(args: argparse.Namespace) -> int:
    from node.record.export import ExportError, export_clip

    try:
        cfg = load_config(args.config)
        m = export_clip(Path(cfg.storage.path), args.start, args.end, Path(args.output),
                        signer=_signer(cfg), node_id=cfg.node.id)
    except ConfigError as exc:
        return _fail(f"config error: {exc}", 2)
    except ExportError as exc:
        return _fail(str(exc), 1)
    print(f"{args.output}: {m['frames']} frames, {m['actual']['start']} .. {m['actual']['end']}, "
          f"{len(m['segments'])} segments; manifest {args.output}.json")
    if not m["time_trusted"]:
        print("WARNING: footage recorded while the clock was not synchronised: times untrusted")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from node.record.verify import verify_clip, verify_store

    try:
        cfg = load_config(args.config) if args.config else None
        pub = args.pubkey or (_signer(cfg).public_hex if cfg else None)
    except ConfigError as exc:
        return _fail(f"config error: {exc}", 2)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.clip:
        manifest = Path(args.manifest or args.clip + ".json")
        v = verify_clip(Path(args.clip), manifest, pub)
        what = args.clip
    else:
        if cfg is None:
            return _fail("verify needs --config (the store) or a clip with --manifest", 2)
        v = verify_store(Path(cfg.storage.path), pub, hash_files=not args.quick)
        what = cfg.storage.path
    for n in getattr(v, "notes", []):
        print(f"note: {n}")
    if v.ok:
        print(f"{what}: OK ({v.checked} segments checked{', signatures verified' if pub else ''})")
        return 0
    print(f"{what}: FAILED: {v.first}")
    for p in v.problems[1:]:
        print(f"  also: {p}")
    return 1


def register(subparsers: Any) -> None:
    """Add ``storage plan``, ``clip`` and ``verify`` to the ``camnode`` parser."""
    st = subparsers.add_parser("storage", help="storage planning")
    ssub = st.add_subparsers(dest="storage_command", required=True)
    pl = ssub.add_parser("plan", help="days of footage a card holds; what fits the target")
    pl.add_argument("--card", required=True, help="card size, e.g. 128G, 64GiB")
    pl.add_argument("--resolution", help="WIDTHxHEIGHT (default: the config's camera)")
    pl.add_argument("--fps", type=float, help="frames per second (default: the config's camera)")
    pl.add_argument("--bitrate", help="e.g. 1.2M (bit/s); default: measured from --config's store")
    pl.add_argument("--config", "-c", help="node config: measured bitrate, camera, retention")
    pl.add_argument("--days", type=float, help="retention target (default: record.max_age_days)")
    pl.add_argument("--reserve", default="2G", help="space kept for the system (default 2G)")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(func=cmd_plan)

    cl = subparsers.add_parser("clip", help="export footage of a UTC range as one MP4 + manifest")
    cl.add_argument("--start", required=True, type=_utc, help="UTC start, ISO 8601")
    cl.add_argument("--end", required=True, type=_utc, help="UTC end, ISO 8601")
    cl.add_argument("-o", "--output", required=True, help="the MP4 to write")
    cl.add_argument("--config", "-c", help="node config (storage.path, signing key)")
    cl.set_defaults(func=cmd_clip)

    ve = subparsers.add_parser("verify", help="check the footage store or an exported clip")
    ve.add_argument("clip", nargs="?", help="an exported clip (else: the store of --config)")
    ve.add_argument("--manifest", help="the clip's manifest (default: CLIP.json)")
    ve.add_argument("--config", "-c", help="node config (the store, the signing key)")
    ve.add_argument("--pubkey", help="node public key (hex) to check signatures with")
    ve.add_argument("--quick", action="store_true", help="skip hashing file contents")
    ve.set_defaults(func=cmd_verify)
