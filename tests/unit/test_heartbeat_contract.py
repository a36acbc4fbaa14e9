"""The heartbeat is a contract: every field of ``HEARTBEAT_FIELDS`` is documented in
``docs/mqtt.md`` (the fleet view, the station and the docs read the same names)."""

from __future__ import annotations

import re
from pathlib import Path

from node.link.topics import HEARTBEAT_FIELDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def heartbeat_table_fields() -> set[str]:
    text = DOC.read_text()
    section = text.split("## heartbeat", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


def test_every_heartbeat_field_is_documented():
    documented = heartbeat_table_fields()
    assert {"heartbeat_s", "faults", "throttled"} <= documented  # the parse found the table
    assert sorted(set(HEARTBEAT_FIELDS) - documented) == []
