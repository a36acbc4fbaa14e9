"""Package layering: ``hw`` (vendor seam) < ``node`` (the pole) ; ``station`` and ``provisioning``
(the police post) sit beside the node, never below it; ``demo`` (``make run``) composes them all
and nothing imports it. Deferred imports (inside functions) count."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "hw": ("node", "station", "provisioning", "demo"),
    "node": ("station", "provisioning", "demo"),
    "station": ("demo",),
    "provisioning": ("demo",),
}


def imported(path: Path) -> list[str]:
    """Every absolute module name ``path`` imports, at any depth of the file."""
    names: list[str] = []
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(n, ast.Import):
            names += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            names.append(n.module)
    return names


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((REPO / package).rglob("*.py")):
        out += [f"{path.relative_to(REPO)}: {name}" for name in imported(path)
                if name.split(".")[0] in forbidden]
    return out


def test_no_package_imports_a_layer_above_it():
    found = {pkg: offenders(pkg, bad) for pkg, bad in FORBIDDEN.items()}
    assert found == {pkg: [] for pkg in FORBIDDEN}


def test_the_check_sees_deferred_imports(tmp_path):
    # the rule must not be blind to an import inside a function body
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from station.live.relay import Relay\n    import provisioning.cli\n")
    assert imported(mod) == ["station.live.relay", "provisioning.cli"]
