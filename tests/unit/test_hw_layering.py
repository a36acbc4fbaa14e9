"""The hardware layer's two rules: ``hw`` never imports ``node``, and importing a hw module
touches no vendor library (gpiozero, picamera2, PyAV load only when a device is built)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_hw_never_imports_node():
    offenders = []
    for path in sorted((REPO / "hw").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names
                          if n == "node" or n.startswith("node.")]
    assert offenders == []


def test_importing_hw_loads_no_vendor_library():
    code = (
        "import sys\n"
        "import hw.gpio, hw.light, hw.platform, hw.overlay, hw.camera, hw.camera.picamera2\n"
        "import hw.camera.pyav, hw.encode.select, hw.encode.libav\n"
        "print(sorted(m for m in ('gpiozero', 'picamera2', 'av', 'lgpio') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
