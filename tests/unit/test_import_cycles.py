"""No import circles anywhere in the tree: ``node``, ``hw``, ``station``, ``provisioning``.

Every ``import`` statement counts, wherever it stands: at the top, inside a function (a
deferred import only hides a circle until the function runs) or under ``TYPE_CHECKING``
(a circle in the types is one in the design). ``from a import b`` is an edge to ``a`` (it
runs first: a package's ``__init__`` that imports the importer back closes a circle) and to the
module ``a.b`` when that is one.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("node", "hw", "station", "provisioning")


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under the packages."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module → the tree's modules it imports (anywhere in its body)."""
    files = module_files(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                # the package named after ``from`` runs first (its ``__init__`` may import the
                # importer back), then each name that is a module of it
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_tree_has_no_import_circle():
    graph = import_graph(REPO, PACKAGES)
    assert len(graph) > 60  # the walk found the tree
    assert sum(len(v) for v in graph.values()) > 120
    assert cycles(graph) == []


def test_a_deferred_import_circle_is_found(tmp_path):
    """The walk sees imports inside functions, under TYPE_CHECKING and relative ones."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    (pkg / "d.py").write_text("import pkg.a\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg", "pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_a_circle_through_a_package_init_is_found(tmp_path):
    """``from pkg import sibling`` inside the package runs ``pkg/__init__``, which imports the
    importer: a circle, although the sibling itself imports nothing."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("from pkg import b\nA = 1\n")
    (pkg / "b.py").write_text("")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg", "pkg.b"}
    assert cycles(graph) == [["pkg", "pkg.a"]]
    (pkg / "a.py").write_text("import pkg.b\nA = 1\n")  # by the module's path: no edge to pkg
    assert cycles(import_graph(tmp_path, ("pkg",))) == []
