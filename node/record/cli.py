"""CLI subcommands of the recording feature: ``storage plan``, ``clip``, ``verify``.

``node.cli`` calls :func:`register` with its subparsers. Every command returns an exit code:
0 ok, 1 a failed check or a runtime failure, 2 a bad config or bad arguments.
Thread: the CLI's main thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from node.config import ConfigError, load_config


def _utc(text: str) -> datetime:
    """ISO 8601 with a zone (the rule of every command: :func:`node.link.topics.parse_time`)."""
    from node.link.topics import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fail(msg: str, code: int) -> int:
    print(f"camnode: {msg}", file=sys.stderr)
    return code


def _signer(cfg: Any):
    from node.record.integrity import Signer

    key = cfg.record.signing_key
    return Signer.from_file(key) if key and Path(key).exists() else Signer.none()


def cmd_plan(args: argparse.Namespace) -> int:
    """Days a card holds at a bitrate; without ``--bitrate`` the bitrate the node would plan
    for the retention target; without ``--card`` the card a bitrate or quality needs."""
    from node.record import capacity as cap

    try:
        cfg = load_config(args.config) if args.config else None
        width, height = cap.parse_resolution(args.resolution) if args.resolution else (
            (cfg.camera.width, cfg.camera.height) if cfg else (1920, 1080))
        fps = args.fps or (cfg.camera.fps if cfg else 15.0)
        if not 0 < fps <= 120:
            raise ValueError(f"fps {fps:g} outside 0..120")
        target = args.days or (cfg.record.max_age_days if cfg else 30.0)
        if not 0 < target <= cap.MAX_DAYS:
            raise ValueError(f"--days {target:g} outside 0..{cap.MAX_DAYS:g}")
        reserve = cap.parse_size(args.reserve, what="reserve", example="2G")
        headroom_s = cfg.record.headroom_s if cfg else 3600.0
        card = cap.parse_card(args.card) if args.card else None
        bitrate, source = _plan_bitrate(args, cfg, card, width, height, fps, target, reserve,
                                        headroom_s)
        if card is None:
            return _print_card_needed(args, bitrate, source, width, height, fps, target, reserve,
                                      headroom_s)
        p = cap.plan(card, bitrate, width, height, fps, target_days=target,
                     reserve_bytes=reserve, headroom_s=headroom_s)
    except ConfigError as exc:
        return _fail(f"config error: {exc}", 2)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.json:
        print(json.dumps(p.as_dict() | {"bitrate_source": source}, indent=2))
    else:
        print("\n".join(p.lines()))
        print(f"(bitrate {source})")
    return 0


def _plan_bitrate(args: argparse.Namespace, cfg: Any, card: float | None, width: int, height: int,
                  fps: float, target: float, reserve: float, headroom_s: float) -> tuple[float, str]:
    """The bitrate to plan with and where it came from."""
    from node.record import capacity as cap

    if args.bitrate:
        return cap.parse_bitrate(args.bitrate), "given"
    if args.quality:
        return cap.QUALITY[args.quality] * width * height * fps, f"quality {args.quality!r}"
    if cfg is not None and (Path(cfg.storage.path) / "index.db").exists():
        from node.record.index import Index

        idx = Index(Path(cfg.storage.path) / "index.db")
        rate = idx.recent_rate(60)
        idx.close()
        if rate > 0:
            return rate * 8, "measured on this node"
    if cfg is not None and getattr(cfg.encoder, "rate_control", "budget") == "fixed":
        return cfg.encoder.bitrate_kbps * 1000.0, "configured"
    if card is None:
        raise ValueError("give --card (to plan a bitrate), --bitrate or --quality (to size a card)")
    b = cap.bitrate_for(card, target, reserve_bytes=reserve, headroom_s=headroom_s)
    ceiling = cap.QUALITY["high"] * width * height * fps
    if b < cap.BITRATE_RANGE[0]:
        raise ValueError(f"a {card / 1e9:g} GB card cannot hold {target:g} days at any usable "
                         f"bitrate ({b / 1000:.1f} kbit/s): a bigger card or fewer days")
    if b > ceiling:
        return ceiling, (f"planned: quality 'high' is reached below the {target:g}-day budget "
                         f"of {b / 1000:.0f} kbit/s")
    return b, f"planned for the {target:g}-day target"


def _print_card_needed(args: argparse.Namespace, bitrate: float, source: str, width: int,
                       height: int, fps: float, target: float, reserve: float,
                       headroom_s: float) -> int:
    from node.record import capacity as cap

    need = cap.card_for(bitrate, target, reserve_bytes=reserve, headroom_s=headroom_s)
    bpp = cap.bits_per_pixel(bitrate, width, height, fps)
    out = {"card_needed_bytes": round(need), "card_to_buy": cap.card_size_for(need),
           "days": target, "target_days": target, "bitrate_kbps": round(bitrate / 1000, 1),
           "bitrate_bps": bitrate, "bits_per_pixel": round(bpp, 4),
           "quality": cap.quality_name(bpp), "width": width, "height": height, "fps": fps,
           "bitrate_source": source}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"stream: {width}x{height} @ {fps:g} fps, {bitrate / 1e6:.3g} Mbit/s "
              f"({bpp:.3f} bit/pixel, quality {cap.quality_name(bpp)}; bitrate {source})")
        print(f"for {target:g} days: a card of >= {need / 1e9:.1f} GB (buy {out['card_to_buy']})")
    return 0


def cmd_clip(args: argparse.Namespace) -> int:
    from node.record.export import ExportError, export_clip, manifest_path

    if not args.config:
        return _fail("clip needs --config (the node's config: where its footage and key are, "
                     "e.g. /etc/camnode/node.toml)", 2)
    try:
        cfg = load_config(args.config)
        m = export_clip(Path(cfg.storage.path), args.start, args.end, Path(args.output),
                        signer=_signer(cfg), node_id=cfg.node.id)
    except ConfigError as exc:
        return _fail(f"config error: {exc}", 2)
    except ExportError as exc:
        return _fail(str(exc), 1)
    print(f"{args.output}: {m['frames']} frames, {m['actual']['start']} .. {m['actual']['end']}, "
          f"{len(m['segments'])} segments; manifest {manifest_path(Path(args.output))}")
    if not m["time_trusted"]:
        print("WARNING: footage recorded while the clock was not synchronised: times untrusted")
    return 0


def _trusted_key(args: argparse.Namespace, cfg: Any, node_id: str | None) -> tuple[str | None, str]:
    """(key, where it came from) — from --pubkey, --inventory or the node's own key; never
    from the manifest. Raises node.record.trust.TrustError (usage) for an unusable argument."""
    from node.record.trust import TrustError, inventory_key, read_pubkey

    if args.pubkey:
        return read_pubkey(args.pubkey), "--pubkey"
    if args.inventory:
        if not node_id:
            raise TrustError("the manifest names no node: give --pubkey")
        key = inventory_key(Path(args.inventory), node_id)
        return key, f"{node_id} in {args.inventory}" if key else f"{node_id} is not in {args.inventory}"
    if cfg is not None:
        key = _signer(cfg).public_hex
        return key, "this node's signing key" if key else "this node has no signing key"
    return None, "no trusted key (give --pubkey or --inventory)"


def cmd_verify(args: argparse.Namespace) -> int:
    from node.record.export import manifest_path
    from node.record.trust import UNKNOWN, TrustError
    from node.record.verify import ManifestUnreadable, read_manifest, verify_clip, verify_store

    try:
        cfg = load_config(args.config) if args.config else None
        if args.clip:
            clip = Path(args.clip)
            if not clip.is_file():
                return _fail(f"{clip}: no such clip", 2)
            manifest = read_manifest(Path(args.manifest) if args.manifest else manifest_path(clip))
            node_id = manifest.get("node_id") if isinstance(manifest.get("node_id"), str) else None
            key, source = _trusted_key(args, cfg, node_id)
            v = verify_clip(clip, manifest, key)
            what = args.clip
        else:
            if cfg is None:
                return _fail("verify needs --config (the store) or a clip (its manifest beside it)", 2)
            key, source = _trusted_key(args, cfg, cfg.node.id)
            v = verify_store(Path(cfg.storage.path), key, hash_files=not args.quick)
            v.authenticated = key is not None
            what = cfg.storage.path
    except ConfigError as exc:
        return _fail(f"config error: {exc}", 2)
    except (TrustError, ManifestUnreadable) as exc:
        return _fail(str(exc), 2)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if v.unreadable:
        return _fail(v.unreadable, 2)
    for n in getattr(v, "notes", []):
        print(f"note: {n}")
    if not v.ok:
        print(f"{what}: FAILED: {v.first}")
        for p in v.problems[1:]:
            print(f"  also: {p}")
        return 1
    if not v.authenticated:
        print(f"{what}: {UNKNOWN}: {v.checked} segments match their hashes and chain, but no key "
              f"vouches for who recorded them ({source})")
        return 3
    print(f"{what}: OK ({v.checked} segments checked, signatures verified with {source})")
    return 0


def capacity_levels() -> list[str]:
    from node.record.capacity import QUALITY

    return list(QUALITY)


def register(subparsers: Any) -> None:
    """Add ``storage plan``, ``clip`` and ``verify`` to the ``camnode`` parser."""
    st = subparsers.add_parser("storage", help="storage planning")
    ssub = st.add_subparsers(dest="storage_command", required=True)
    pl = ssub.add_parser("plan", help="days of footage a card holds; what fits the target")
    pl.add_argument("--card", help="card size with its unit, e.g. 128G (decimal, as sold) or "
                    "64GiB; without it: the card --bitrate/--quality needs")
    pl.add_argument("--resolution", help="WIDTHxHEIGHT (default: the config's camera)")
    pl.add_argument("--fps", type=float, help="frames per second (default: the config's camera)")
    pl.add_argument("--bitrate", help="bit/s with its unit, e.g. 1.2M or 400k; default: measured "
                    "from --config's store, else planned for the retention target")
    pl.add_argument("--quality", choices=sorted(capacity_levels()),
                    help="a named quality (bits per pixel, see docs/recording.md) instead of --bitrate")
    pl.add_argument("--config", "-c", help="node config: measured bitrate, camera, retention")
    pl.add_argument("--days", type=float, help="retention target (default: record.max_age_days)")
    pl.add_argument("--reserve", default="2G", help="space kept for the system, with its unit "
                    "(default 2G)")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(func=cmd_plan)

    cl = subparsers.add_parser("clip", help="export footage of a UTC range as one MP4 + manifest")
    cl.add_argument("--start", required=True, type=_utc,
                    help="start, ISO 8601 with a zone (Z or +07:00); a time without one is refused")
    cl.add_argument("--end", required=True, type=_utc, help="end, ISO 8601 with a zone")
    cl.add_argument("-o", "--output", required=True, help="the MP4 to write")
    cl.add_argument("--config", "-c", help="node config (storage.path, signing key)")
    cl.set_defaults(func=cmd_clip)

    ve = subparsers.add_parser(
        "verify", help="check the footage store or an exported clip",
        description="Exit codes: 0 intact and signed by the trusted key; 1 altered, forged or "
        "unsigned; 2 bad arguments or no readable manifest; 3 intact but authenticity unknown "
        "(no trusted key: the key inside a manifest is never trusted).")
    ve.add_argument("clip", nargs="?", help="an exported clip (else: the store of --config)")
    ve.add_argument("--manifest", help="the clip's manifest (default: CLIP.json, e.g. clip.mp4.json)")
    ve.add_argument("--config", "-c", help="node config (the store; on the node, its own key)")
    ve.add_argument("--pubkey", help="the node's public key: 64 hex digits or its signing.pub file")
    ve.add_argument("--inventory", help="the ward's inventory.csv: the key of the node the manifest names")
    ve.add_argument("--quick", action="store_true", help="skip hashing file contents")
    ve.set_defaults(func=cmd_verify)
