"""The house rules issue 9 made checkable: vision modules stay small, and commands and
diagnostics are handed parts, never the whole node."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_vision_module_over_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "node" / "vision").glob("*.py")}
    assert len(sizes) >= 5
    assert {n: s for n, s in sizes.items() if s > 400} == {}


def test_commands_and_diagnostics_never_see_the_node():
    for name in ("commands.py", "diagnostics.py"):
        tree = ast.parse((REPO / "node" / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "node.app" not in imported, name
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "Node"}
        assert "Node" not in names, name
