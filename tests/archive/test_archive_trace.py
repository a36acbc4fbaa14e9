"""Inventory import and tracing along a street, on SQLite and on the PostgreSQL server."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from node.clock import FakeClock
from station.archive import open_archive
from station.archive.ingest import Ingestor
from station.archive.inventory import InventoryError, get_node, import_csv, list_nodes, parse_fields, upsert
from station.archive.trace import TraceError, bearing, side_bearing, trace

NOW = datetime(2026, 11, 22, 19, 0)
KEY = "ab" * 32


@pytest.fixture
def engine(archive_url):
    e = open_archive(archive_url)
    yield e
    e.dispose()


def write_inventory(path, extra_rows=""):
    # provisioning's columns, then the ward's: five poles along an east-west street, all looking
    # north across it (a walker heading east enters on the left and leaves on the right)
    lines = ["node_id,name,broker,signing_public_key,provisioned_utc,site,lat,lon,facing_deg,neighbours"]
    for i in range(1, 6):
        nb = " ".join(f"p{j}" for j in (i - 1, i + 1) if 1 <= j <= 5)
        lon = 13.400 + i * 0.001
        lines.append(f"p{i},Pole {i},b:8883,{KEY},2026-11-01T00:00:00Z,market,52.5,{lon:.3f},0,{nb}")
    path.write_text("\n".join(lines) + "\n" + extra_rows)
    return path


def test_inventory_import_update_and_refusals(engine, tmp_path):
    inv = write_inventory(tmp_path / "inventory.csv")
    assert import_csv(engine, inv, NOW) == {"added": 5, "updated": 0, "unchanged": 0}
    assert import_csv(engine, inv, NOW) == {"added": 0, "updated": 0, "unchanged": 5}
    p3 = get_node(engine, "p3")
    assert p3["neighbours"] == ["p2", "p4"] and p3["pubkey"] == KEY and p3["lon"] == pytest.approx(13.403)
    assert upsert(engine, "p3", {"address": "12 Market St"}, NOW) == "updated"
    # re-provisioning (a new key) from a bare provisioning file: the key the archive trusts is
    # not replaced by an edited file unless that was asked for, and nothing else changes then
    (tmp_path / "again.csv").write_text("node_id,name,broker,signing_public_key,provisioned_utc\n"
                                        f"p1,Pole 1,b:8883,{KEY},2026-11-20T00:00:00Z\n"
                                        f"p3,Pole 3,b:8883,{'cd' * 32},2026-11-20T00:00:00Z\n")
    with pytest.raises(InventoryError, match=r"again.csv:3: p3: its signing key differs .*--replace-key p3"):
        import_csv(engine, tmp_path / "again.csv", NOW)
    with pytest.raises(InventoryError, match="--replace-key p3"):
        upsert(engine, "p3", {"pubkey": "cd" * 32}, NOW)
    assert get_node(engine, "p3")["pubkey"] == KEY
    assert import_csv(engine, tmp_path / "again.csv", NOW, replace_keys=frozenset({"p3"}))["updated"] == 1
    # the same key spelt in capitals or as PEM is the same key (stored once, as lower-case hex)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pem = Ed25519PublicKey.from_public_bytes(bytes.fromhex("cd" * 32)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert upsert(engine, "p3", parse_fields({"pubkey": "CD" * 32}, "cli"), NOW) == "unchanged"
    assert upsert(engine, "p3", parse_fields({"pubkey": pem}, "cli"), NOW) == "unchanged"
    assert get_node(engine, "p3")["pubkey"] == "cd" * 32
    twice = write_inventory(tmp_path / "twice.csv", f"p2,Pole 2 again,b:8883,{KEY},t,market,52.5,13.4,0,\n")
    with pytest.raises(InventoryError, match=r"twice.csv:7: p2 is on line 3 too"):
        import_csv(engine, twice, NOW)
    p3 = get_node(engine, "p3")
    assert p3["pubkey"] == "cd" * 32 and p3["address"] == "12 Market St" and p3["site"] == "market"
    bad = write_inventory(tmp_path / "bad.csv", f"p9,x,b,{KEY},t,market,95,13,0,\n")
    with pytest.raises(InventoryError, match=r"bad.csv:7: lat must be within -90..90"):
        import_csv(engine, bad, NOW)
    assert get_node(engine, "p9") is None and len(list_nodes(engine)) == 5  # nothing half-imported
    (tmp_path / "odd.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InventoryError, match="no node_id column"):
        import_csv(engine, tmp_path / "odd.csv", NOW)
    with pytest.raises(InventoryError, match="public key"):
        parse_fields({"pubkey": "nope"}, "cli")


def test_geometry():
    assert bearing((52.5, 13.4), (52.5, 13.401)) == pytest.approx(90, abs=0.1)
    assert bearing((52.5, 13.4), (52.501, 13.4)) == pytest.approx(0, abs=0.1)
    assert side_bearing(0, "right") == 90 and side_bearing(90, "left") == 0 and side_bearing(0, "top") == 0
    assert side_bearing(None, "right") is None and side_bearing(10, None) is None


def test_trace_follows_the_walker_pole_to_pole(engine, tmp_path):
    import_csv(engine, write_inventory(tmp_path / "inventory.csv"), NOW)
    ing = Ingestor(engine, "camnode", tmp_path / "media", FakeClock(datetime(2026, 11, 22, 19, tzinfo=UTC)))

    def ev(eid, node, hhmmss, label="person", upper="red", lower="blue", entry="left", exit="right"):
        colours = {"upper": upper, "lower": lower} if label == "person" else {"body": upper}
        p = {"id": eid, "kind": "object", "phase": "end", "label": label, "start": f"2026-11-22T{hhmmss}Z",
             "end": None, "appearance": {"colours": colours, "entry": entry, "exit": exit}}
        return (f"camnode/{node}/event", json.dumps(p).encode())

    ing.apply([
        ev("before", "p1", "17:58:00"),
        ev("origin", "p2", "18:00:00"),
        ev("next", "p3", "18:01:00"),
        ev("other-person", "p3", "18:01:30", upper="green", lower="black"),
        ev("wrong-way", "p1", "18:02:00"),  # same look, but west of where it went
        ev("then", "p4", "18:03:00"),
        ev("too-late", "p5", "18:20:00"),
        ev("a-car", "p3", "18:01:00", label="car"),
    ])
    tr = trace(engine, "origin", minutes=10)
    assert [e["id"] for e in tr.path] == ["before", "origin", "next", "then"]
    ranked = [e["id"] for e in tr.candidates]
    assert "too-late" not in ranked and "a-car" not in ranked
    assert ranked.index("other-person") == len(ranked) - 1  # no colour in common: last
    assert ranked[0] == "next"  # colours match, on the pole it headed for, nearest in time
    assert {e["id"]: e["toward"] for e in tr.candidates}["wrong-way"] is False
    assert tr.poles == ["p1", "p2", "p3", "p4", "p5"]  # within 600 m
    # by the inventory's neighbours alone: two hops around the origin
    assert trace(engine, "origin", minutes=10, radius_m=10).poles == ["p1", "p2", "p3", "p4"]
    with pytest.raises(TraceError, match="no event"):
        trace(engine, "nope")
