"""The wheels a node installs at first boot: built here, for the board, checked before use.

A node has no compiler and may have no internet, so ``camnode-provision wheels --out DIR``
puts into ``DIR`` camnode's own wheel and every dependency's wheel for the board (aarch64,
CPython of the board's OS). Wheels are tagged by the oldest glibc they need (ai-edge-litert's
is ``manylinux_2_27``, av's ``manylinux_2_28``), so pip is given every ``manylinux_2_N`` tag up
to the board OS's glibc instead of the single ``manylinux2014`` tag (which finds neither).

:func:`check` asks pip to resolve the exact requirement first boot installs from ``DIR`` alone
(``--no-index``, ``--dry-run``, for the board's platform): an image is never built with wheels
that would not install.

Thread: the CLI's. Cost: pip's resolution (~2 s); the download once (~70 MB).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from provisioning.errors import ProvisionError, ToolError

#: The project's packages (pyproject.toml's packages.find).
PACKAGES = ("node", "hw", "provisioning", "station")

#: Raspberry Pi OS 12 (bookworm): CPython 3.11, glibc 2.36.
PYTHON, GLIBC_MINOR = "3.11", 36


#: the boards' CPUs (x86_64: a PC-class node, and the VM the system tests boot)
ARCHES = ("aarch64", "x86_64")


def platform_args(python: str = PYTHON, glibc_minor: int = GLIBC_MINOR, arch: str = "aarch64") -> list[str]:
    if arch not in ARCHES:
        raise ProvisionError(f"--arch {arch}: expected one of {', '.join(ARCHES)}")
    tags = [f"manylinux2014_{arch}"] + [f"manylinux_2_{m}_{arch}" for m in range(17, glibc_minor + 1)]
    args = []
    for tag in tags:
        args += ["--platform", tag]
    return [*args, "--python-version", python, "--implementation", "cp", "--only-binary=:all:"]


def requirement(detect: bool) -> str:
    """What first boot installs (the detector's runtime only when the node detects)."""
    return "camnode[detect]" if detect else "camnode"


def _pip(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"pip {args[0]} did not finish in {timeout:.0f} s") from None


def _last_error(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.startswith("ERROR")]
    return lines[-1].removeprefix("ERROR: ") if lines else (r.stderr.strip().splitlines() or ["?"])[-1]


def build(dest: Path, *, source: Path | None = None, python: str = PYTHON,
          arch: str = "aarch64") -> list[Path]:
    """camnode's wheel (from its source tree) and its dependencies' board wheels into ``dest``."""
    source = source or Path(__file__).resolve().parents[1]
    if not (source / "pyproject.toml").is_file():
        raise ProvisionError(f"{source}: not camnode's source tree (pyproject.toml); build from a checkout")
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="camnode-src-") as tmp:
        # a copy of the sources: setuptools writes build/ and *.egg-info beside what it builds
        tree = Path(tmp) / "camnode"
        tree.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(source / name, tree / name)
        for pkg in PACKAGES:
            shutil.copytree(source / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        r = _pip("wheel", "--no-deps", "-q", "-w", str(dest), str(tree))
    if r.returncode != 0:
        raise ToolError(f"building camnode's wheel failed: {_last_error(r)}")
    r = _pip("download", "-q", "-d", str(dest), "--find-links", str(dest), *platform_args(python, arch=arch),
             requirement(True))
    if r.returncode != 0:
        raise ToolError(f"pip download failed: {_last_error(r)}")
    check(dest, detect=True, python=python, arch=arch)
    return sorted(dest.glob("*.whl"))


def check(wheels: Path, *, detect: bool, python: str = PYTHON, arch: str = "aarch64") -> None:
    """Refuse a wheel folder from which first boot could not install camnode on the board."""
    if not wheels.is_dir():
        raise ProvisionError(f"--wheels {wheels}: no such directory")
    if not any(wheels.glob("*.whl")):
        raise ProvisionError(f"--wheels {wheels}: no .whl files (make them with camnode-provision wheels)")
    if not any(wheels.glob("camnode-*.whl")):
        raise ProvisionError(f"--wheels {wheels}: no camnode wheel (the node would have nothing to run)")
    with tempfile.TemporaryDirectory(prefix="camnode-wheelcheck-") as tmp:
        r = _pip("install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(wheels),
                 "--target", tmp, *platform_args(python, arch=arch), requirement(detect), timeout=300)
    if r.returncode != 0:
        raise ProvisionError(f"--wheels {wheels}: first boot could not install {requirement(detect)} "
                             f"for {arch} CPython {python}: {_last_error(r)}")
