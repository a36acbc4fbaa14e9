"""Evidence integrity: tamper tests on a real store, signed chains, clip export and its check."""

from __future__ import annotations

import itertools
import json
import os
from datetime import timedelta
from pathlib import Path

import av
import pytest

from node.clock import FakeClock
from node.config import config_from_dict
from node.record import cli as record_cli
from node.record.export import ExportError, export_clip
from node.record.integrity import Signer, generate_key
from node.record.recorder import Recorder
from node.record.retention import Policy
from node.record.verify import verify_clip, verify_store
from tests.record_media import T0, decode_count, encode_packets


def _store(root: Path, seconds: float = 24, segment_s: float = 4.0, signer: Signer | None = None,
           gop_s: float = 1.0) -> Recorder:
    info, pkts = encode_packets(seconds, gop_s=gop_s)
    rec = Recorder(root, FakeClock(T0 + timedelta(seconds=seconds)), segment_s=segment_s,
                   threaded=False, signer=signer,
                   policy=Policy(headroom_s=0, min_free_bytes=0))
    rec.start(info)
    for p in pkts:
        rec.write(p)
    rec.stop()
    return rec


def _path(rec: Recorder, seq: int) -> Path:
    return rec.store.path_of(rec.store.index.get(seq)["name"])


def test_untouched_store_verifies(tmp_path: Path) -> None:
    rec = _store(tmp_path)
    v = verify_store(tmp_path)
    assert v.ok and v.checked == 6
    rec.close()


def test_modified_byte_is_named(tmp_path: Path) -> None:
    rec = _store(tmp_path)
    p = _path(rec, 3)
    with open(p, "r+b") as fh:
        fh.seek(p.stat().st_size // 2)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x01]))
    v = verify_store(tmp_path)
    assert v.first == f"altered: {p.name} (content does not match its SHA-256)"
    rec.close()


def test_deleted_middle_segment_is_named(tmp_path: Path) -> None:
    rec = _store(tmp_path)
    p = _path(rec, 4)
    p.unlink()
    v = verify_store(tmp_path)
    assert v.first == f"removed: {p.name} (seq 4) is gone without a deletion record"
    # with the index gone too, the chain still shows the hole
    rec.close()
    for q in tmp_path.glob("index.db*"):
        q.unlink()
    v = verify_store(tmp_path)
    assert v.first == f"chain broken at {_name_of(tmp_path, 5)}: a segment before it was removed or inserted"


def _name_of(root: Path, seq: int) -> str:
    return next(p.name for p in root.glob("*/*.mp4") if p.name.endswith(f"-{seq:08d}.mp4"))


def test_swapped_segments_are_named(tmp_path: Path) -> None:
    rec = _store(tmp_path)
    a, b = _path(rec, 2), _path(rec, 3)
    tmp = a.with_suffix(".tmp")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    v = verify_store(tmp_path)
    assert v.first == f"swapped: {a.name} carries the seal of {b.name}"
    rec.close()


def test_inserted_segment_is_named(tmp_path: Path) -> None:
    rec = _store(tmp_path)
    p = _path(rec, 6)
    fake = p.with_name(p.name.replace("-00000006", "-00000007"))
    fake.write_bytes(p.read_bytes())
    v = verify_store(tmp_path)
    assert v.first == f"swapped: {fake.name} carries the seal of {p.name}"
    rec.close()


def test_retention_gaps_are_not_tampering(tmp_path: Path) -> None:
    rec = _store(tmp_path)
    rec.store.delete(1, "age")
    rec.store.delete(2, "age")
    assert verify_store(tmp_path).ok
    rec.close()


def test_signed_chain_detects_a_recomputed_forgery(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    pub = generate_key(key)
    root = tmp_path / "rec"
    rec = _store(root, signer=Signer.from_file(key))
    assert verify_store(root, pub).ok
    # an attacker with another key re-seals the whole store: only the signatures give it away
    other = Signer.from_file(_other_key(tmp_path))
    from node.record import mp4box
    from node.record.integrity import chain_hash
    p = _path(rec, 1)
    seal, media = mp4box.read_seal(p)
    seal["sig"] = other.sign(chain_hash(seal))
    with open(p, "r+b") as fh:
        fh.truncate(media)
        fh.seek(media)
        fh.write(mp4box.seal_box(seal))
    v = verify_store(root, pub)
    assert v.first is not None and v.first.startswith(f"forged: {p.name}")
    rec.close()


def _other_key(tmp_path: Path) -> Path:
    k = tmp_path / "other.key"
    generate_key(k)
    return k


def test_export_spanning_three_segments_decodes_and_matches_the_range(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    rec = _store(root, seconds=24, segment_s=4.0, gop_s=1.0)
    start, end = T0 + timedelta(seconds=5.4), T0 + timedelta(seconds=14.3)
    out = tmp_path / "clip.mp4"
    m = export_clip(root, start, end, out)
    assert [s["seq"] for s in m["segments"]] == [2, 3, 4]
    with av.open(str(out)) as c:
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        ts = [f.pts * f.time_base for f in frames]
    assert len(frames) == m["frames"] == decode_count(out)
    assert ts[0] == 0 and all(b > a for a, b in itertools.pairwise(ts))  # rebased, continuous
    gop = 1.0
    actual_start = T0 + timedelta(seconds=5.0)
    assert m["actual"]["start"] == actual_start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert 0 <= (start - actual_start).total_seconds() < gop
    duration = float(ts[-1]) + 1 / 15
    assert abs(duration - (end - start).total_seconds()) <= gop
    assert verify_clip(out, Path(str(out) + ".json")).ok
    rec.close()


def test_export_of_an_empty_range_fails_clearly(tmp_path: Path) -> None:
    rec = _store(tmp_path, seconds=4)
    with pytest.raises(ExportError, match="no footage"):
        export_clip(tmp_path, T0 - timedelta(hours=2), T0 - timedelta(hours=1), tmp_path / "x.mp4")
    rec.close()


def test_tampered_clip_and_manifest_are_caught(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    pub = generate_key(key)
    root = tmp_path / "rec"
    rec = _store(root, signer=Signer.from_file(key))
    out = tmp_path / "clip.mp4"
    export_clip(root, T0 + timedelta(seconds=1), T0 + timedelta(seconds=10), out,
                signer=Signer.from_file(key))
    man = Path(str(out) + ".json")
    assert verify_clip(out, man, pub).ok
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    assert verify_clip(bad, man, pub).first == "altered: bad.mp4 does not match the manifest's SHA-256"
    m = json.loads(man.read_text())
    m["segments"][1]["end_utc"] = "2026-03-01T13:00:00Z"  # not covered by the chain...
    m["requested"]["start"] = "2026-03-01T11:00:00Z"      # ...but by the manifest signature
    man.write_text(json.dumps(m))
    assert verify_clip(out, man, pub).first == "forged: the manifest's signature does not verify"
    rec.close()


def _cfg_file(tmp_path: Path, root: Path, key: str = "") -> Path:
    p = tmp_path / "node.toml"
    p.write_text(f'[storage]\npath = "{root}"\n[record]\nsigning_key = "{key}"\n')
    config_from_dict({"storage": {"path": str(root)}, "record": {"signing_key": key}})
    return p


def _cli(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="camnode")
    record_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_clip_and_verify_end_to_end(tmp_path: Path, capsys) -> None:
    key = tmp_path / "node.key"
    generate_key(key)
    root = tmp_path / "rec"
    rec = _store(root, signer=Signer.from_file(key))
    rec.close()
    cfg = _cfg_file(tmp_path, root, str(key))
    out = tmp_path / "c.mp4"
    assert _cli(["clip", "--start", "2026-03-01T12:00:02Z", "--end", "2026-03-01T12:00:09Z",
                 "-o", str(out), "--config", str(cfg)]) == 0
    assert _cli(["verify", str(out), "--config", str(cfg)]) == 0
    assert _cli(["verify", "--config", str(cfg)]) == 0
    victim = next(root.glob("*/*-00000002.mp4"))
    with open(victim, "r+b") as fh:
        fh.seek(2000)
        fh.write(b"\xff")
    assert _cli(["verify", "--config", str(cfg)]) == 1
    assert f"FAILED: altered: {victim.name}" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "code", "needle"), [
    (["storage", "plan", "--card", "128G", "--resolution", "1920x1080", "--fps", "15",
      "--bitrate", "1.2M"], 0, "days of continuous footage: 9.3"),
    (["storage", "plan", "--card", "128G", "--bitrate", "0.35M"], 0, "days of continuous footage: 32.0\n"),
    (["storage", "plan", "--card", "12X", "--bitrate", "1M"], 2, "not a card size"),
    (["storage", "plan", "--card", "128G"], 0, "(bitrate planned for the 30-day target)"),
    (["storage", "plan", "--bitrate", "1M"], 0, "for 30 days: a card of >= 339.9 GB (buy 512G)"),
    (["storage", "plan"], 2, "give --card"),
    # issue 8 item 11: bare numbers were bytes and bit/s (128 bytes; 9,332,599 days), exit 0
    (["storage", "plan", "--card", "128", "--bitrate", "1.2M"], 2, "card size '128' has no unit"),
    (["storage", "plan", "--card", "128G", "--bitrate", "1.2"], 2, "bitrate '1.2' has no unit"),
    (["storage", "plan", "--card", "128K", "--bitrate", "1.2M"], 2, "check the unit"),
    (["storage", "plan", "--card", "128G", "--bitrate", "5"], 2, "has no unit"),
    (["storage", "plan", "--card", "128G", "--bitrate", "2k"], 2, "check the unit"),
    (["storage", "plan", "--card", "100T", "--bitrate", "20k"], 2, "check the units"),
    (["storage", "plan", "--card", "2G", "--days", "300"], 2, "cannot hold 300 days"),
    (["verify"], 2, "needs --config"),
    (["verify", "--config", "/nonexistent/node.toml"], 2, "config error"),
])
def test_cli_exit_codes(argv, code, needle, capsys) -> None:
    assert _cli(argv) == code
    cap = capsys.readouterr()
    assert needle in cap.out + cap.err


def test_plan_json_both_ways_has_days_and_bitrate(capsys) -> None:
    """``--json`` carries ``days`` and ``bitrate_kbps``; without ``--bitrate`` the plan is the
    bitrate for the target, so the days come out at the target; the card for a quality is the
    inverse."""
    assert _cli(["storage", "plan", "--card", "128G", "--resolution", "1920x1080", "--fps", "15",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["days"] == pytest.approx(30.0, abs=0.01)
    assert 350 < out["bitrate_kbps"] < 400  # field notes: ~395 kbit/s gross, less reserve+floor
    assert out["bitrate_source"] == "planned for the 30-day target"
    assert _cli(["storage", "plan", "--card", "128G", "--bitrate", "1.2M", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["days"] == pytest.approx(9.3, abs=0.05) and out["bitrate_kbps"] == 1200
    assert not out["meets_target"]
    assert _cli(["storage", "plan", "--quality", "standard", "--json"]) == 0
    need = json.loads(capsys.readouterr().out)
    assert _cli(["storage", "plan", "--card", f"{need['card_needed_bytes'] / 1e9:.3f}G",
                 "--quality", "standard", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["days"] == pytest.approx(30.0, abs=0.01)


def test_sizes_need_units_and_plausible_values() -> None:
    from node.record.capacity import parse_bitrate, parse_card, parse_size

    assert parse_card("128G") == 128e9 and parse_card("64GiB") == 64 * 2**30
    assert parse_card("128GB") == 128e9 and parse_bitrate("1.2Mbps") == 1.2e6
    assert parse_bitrate("400kbit/s") == 400e3 and parse_size("0", what="reserve") == 0
    for bad in ("128", "1.2", "12X", ""):
        with pytest.raises(ValueError):
            parse_card(bad)
    with pytest.raises(ValueError, match="outside"):
        parse_bitrate("1G")


def test_plan_30_days_answer_is_consistent() -> None:
    from node.record.capacity import parse_size, plan

    p = plan(parse_size("128G"), 1.2e6, 1920, 1080, 15)
    again = plan(parse_size("128G"), p.bitrate_for_target_bps, 1920, 1080, 15)
    assert again.days == pytest.approx(30.0, rel=1e-6)
    assert p.fps_for_target == pytest.approx(15 * p.bitrate_for_target_bps / 1.2e6)
    # field notes: 30 days take ~324 GB per Mbit/s
    with pytest.raises(ValueError, match="check the units"):  # 88,925 days is a unit mistake
        plan(1e15, 1e6, 1920, 1080, 15)
    assert pytest.approx(324e9) == 1e6 / 8 * 86_400 * 30


def test_verify_on_a_recording_node_notes_the_open_segment(tmp_path: Path) -> None:
    info, pkts = encode_packets(6, gop_s=1.0)
    rec = Recorder(tmp_path, FakeClock(T0), segment_s=4.0, threaded=False,
                   policy=Policy(headroom_s=0, min_free_bytes=0))
    rec.start(info)
    for p in pkts:
        rec.write(p)  # the second segment is still being written
    v = verify_store(tmp_path)
    assert v.ok and v.checked == 1
    assert len(v.notes) == 1 and v.notes[0].startswith("in progress: ")
    rec.close()
    assert verify_store(tmp_path / "elsewhere").first == f"no footage found in {tmp_path / 'elsewhere'}"


def test_plan_from_the_measured_bitrate_of_a_node(tmp_path: Path, capsys) -> None:
    root = tmp_path / "rec"
    rec = _store(root)
    rate_bps = rec.retention.rate() * 8
    rec.close()
    cfg = _cfg_file(tmp_path, root)
    assert _cli(["storage", "plan", "--card", "32G", "--config", str(cfg), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bitrate_source"] == "measured on this node"
    assert out["bitrate_bps"] == pytest.approx(rate_bps)
    assert (out["width"], out["height"], out["fps"]) == (1280, 720, 15.0)  # the config's camera


def test_camnode_cli_routes_the_recording_commands(tmp_path: Path, capsys) -> None:
    from node.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[record]\nmax_age_days = -1\n")
    assert main(["verify", "--config", str(bad)]) == 2
    assert "record.max_age_days" in capsys.readouterr().err
    assert main(["storage", "plan", "--card", "64G", "--bitrate", "500k"]) == 0
    assert "days of continuous footage" in capsys.readouterr().out
