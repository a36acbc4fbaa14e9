"""Verification trusts only keys the verifier already holds (issue 8, items 1 and 2).

A forger alters a clip by one byte, recomputes its hash, re-signs every chain value and the
manifest with a key of their own and writes that key into the manifest — everything inside
the evidence is consistent. Only a key from outside (``--pubkey``, the ward's inventory, the
node's own key) can tell.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from node.config import config_from_dict
from node.record import cli as record_cli
from node.record.export import manifest_digest, manifest_path
from node.record.integrity import Signer, chain_hash, file_sha256, generate_key
from tests.unit.test_record_integrity import _store


def _cli(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="camnode")
    record_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv).func(parser.parse_args(argv))


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    """A node's signed clip exported by ``camnode clip`` as the README says, its public key
    file and the ward's inventory."""
    d = tmp_path_factory.mktemp("evidence")
    key = d / "signing.key"
    pub = generate_key(key)
    (d / "signing.pub").write_text(pub + "\n")
    root = d / "rec"
    _store(root, signer=Signer.from_file(key)).close()
    cfg = d / "node.toml"
    cfg.write_text(f'[node]\nid = "pole-7"\n[storage]\npath = "{root}"\n[record]\nsigning_key = "{key}"\n')
    config_from_dict({"node": {"id": "pole-7"}, "storage": {"path": str(root)}})
    clip = d / "clip.mp4"
    assert _cli(["clip", "--start", "2026-03-01T12:00:02Z", "--end", "2026-03-01T12:00:09Z",
                 "-o", str(clip), "--config", str(cfg)]) == 0
    with (d / "inventory.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node_id", "name", "broker", "signing_public_key", "provisioned_utc"])
        w.writerow(["pole-8", "x", "b:8883", "ab" * 32, "2026-01-01T00:00:00Z"])
        w.writerow(["pole-7", "Le Loi 12", "b:8883", pub, "2026-01-01T00:00:00Z"])
    return {"dir": d, "clip": clip, "pub": pub, "config": cfg}


def _forge(ev, tmp_path: Path) -> tuple[Path, Path]:
    """One byte changed, then everything re-signed with the forger's own key."""
    generate_key(tmp_path / "forger.key")
    forger = Signer.from_file(tmp_path / "forger.key")
    data = bytearray(ev["clip"].read_bytes())
    data[len(data) // 2] ^= 0x01
    forged = tmp_path / "forged.mp4"
    forged.write_bytes(bytes(data))
    m = json.loads(manifest_path(ev["clip"]).read_text())
    m["sha256"] = file_sha256(forged)
    for e in m["segments"]:
        e["chain"] = chain_hash(e)
        e["sig"] = forger.sign(e["chain"])
    m["public_key"] = forger.public_hex
    m.pop("signature")
    m["signature"] = forger.sign(manifest_digest(m).hex())
    man = tmp_path / "forged.json"
    man.write_text(json.dumps(m))
    return forged, man


def test_the_readme_verify_step(evidence, capsys):
    """Item 2: `camnode clip -o clip.mp4` then `camnode verify clip.mp4 --pubkey ...` works:
    one naming rule (clip.mp4.json), found without --manifest."""
    clip = evidence["clip"]
    assert manifest_path(clip).name == "clip.mp4.json" and manifest_path(clip).is_file()
    capsys.readouterr()
    for key in (evidence["pub"], str(evidence["dir"] / "signing.pub")):
        assert _cli(["verify", str(clip), "--pubkey", key]) == 0
        assert "OK (" in capsys.readouterr().out
    assert _cli(["verify", str(clip), "--inventory", str(evidence["dir"] / "inventory.csv")]) == 0
    assert "pole-7 in" in capsys.readouterr().out
    assert _cli(["verify", str(clip), "--config", str(evidence["config"])]) == 0  # on the node


def test_a_forged_clip_is_refused_with_the_reason(evidence, tmp_path, capsys):
    forged, man = _forge(evidence, tmp_path)
    capsys.readouterr()
    # no trusted key: integrity only — never "OK", never exit 0
    assert _cli(["verify", str(forged), "--manifest", str(man)]) == 3
    out = capsys.readouterr().out
    assert "integrity only, authenticity unknown" in out and "OK" not in out
    # with a key the verifier trusts: forged
    for trust in (["--pubkey", evidence["pub"]], ["--inventory", str(evidence["dir"] / "inventory.csv")],
                  ["--config", str(evidence["config"])]):
        assert _cli(["verify", str(forged), "--manifest", str(man), *trust]) == 1, trust
        out = capsys.readouterr().out
        assert "FAILED: forged: signed with another key than the trusted key of pole-7" in out, out
    # the same forger's manifest but the true key written in it: signatures still fail
    m = json.loads(man.read_text())
    m["public_key"] = evidence["pub"]
    man.write_text(json.dumps(m))
    assert _cli(["verify", str(forged), "--manifest", str(man), "--pubkey", evidence["pub"]]) == 1
    assert "does not verify with the trusted key" in capsys.readouterr().out


def test_one_altered_byte_is_refused(evidence, tmp_path, capsys):
    data = bytearray(evidence["clip"].read_bytes())
    data[len(data) // 3] ^= 0x01
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(bytes(data))
    manifest_path(bad).write_bytes(manifest_path(evidence["clip"]).read_bytes())
    capsys.readouterr()
    for trust in ([], ["--pubkey", evidence["pub"]]):
        assert _cli(["verify", str(bad), *trust]) == 1
        assert "FAILED: altered: clip.mp4 does not match the manifest's SHA-256" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "needle"), [
    (["--pubkey", "/no/such/signing.pub"], "no such file"),
    (["--pubkey", "xyz"], "not 64 hex digits"),
    (["--manifest", "/no/such/clip.json"], "no manifest at /no/such/clip.json"),
    (["--inventory", "/no/such/inventory.csv"], "unreadable"),
])
def test_usage_errors_are_not_verdicts(evidence, extra, needle, capsys):
    """A wrong path is the user's mistake (exit 2), never "forged" or "FAILED"."""
    assert _cli(["verify", str(evidence["clip"]), *extra]) == 2
    cap = capsys.readouterr()
    assert needle in cap.err and "FAILED" not in cap.out + cap.err and "forged" not in cap.err


def test_a_node_missing_from_the_inventory_is_unknown(evidence, tmp_path, capsys):
    inv = tmp_path / "inventory.csv"
    inv.write_text("node_id,name,broker,signing_public_key,provisioned_utc\n")
    assert _cli(["verify", str(evidence["clip"]), "--inventory", str(inv)]) == 3
    assert "pole-7 is not in" in capsys.readouterr().out


def test_store_without_a_key_is_integrity_only(tmp_path, capsys):
    root = tmp_path / "rec"
    _store(root, seconds=8).close()
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[storage]\npath = "{root}"\n')
    assert _cli(["verify", "--config", str(cfg)]) == 3
    assert "authenticity unknown" in capsys.readouterr().out


def test_clip_without_a_store_says_so(tmp_path, capsys):
    """Item 13: no --config, or a config whose store is not there: a clear message, nothing made."""
    assert _cli(["clip", "--start", "2026-03-01T12:00:02Z", "--end", "2026-03-01T12:00:09Z",
                 "-o", str(tmp_path / "c.mp4")]) == 2
    assert "clip needs --config" in capsys.readouterr().err
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[storage]\npath = "{tmp_path / "nowhere"}"\n')
    assert _cli(["clip", "--start", "2026-03-01T12:00:02Z", "--end", "2026-03-01T12:00:09Z",
                 "-o", str(tmp_path / "c.mp4"), "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "no footage store at" in err and "Corrupt" not in err
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "c.mp4").exists()


def test_the_library_call_says_unreadable_not_forged(evidence, tmp_path):
    """What the station's evidence code gets for a missing manifest: a reason, no verdict."""
    from node.record.verify import verify_clip

    v = verify_clip(evidence["clip"], tmp_path / "nosuch.json", evidence["pub"])
    assert not v.ok and v.unreadable and "no manifest at" in v.first and "forged" not in v.first
    assert not v.authenticated
    good = verify_clip(evidence["clip"], manifest_path(evidence["clip"]), public_hex=evidence["pub"])
    assert good.ok and good.authenticated and good.unreadable is None
