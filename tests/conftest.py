"""Fixtures shared by the whole suite.

``shared_dir`` points at the project's shared footage and models (``../shared`` beside the
repository, or ``$CAMNODE_SHARED``). Tests that need them fail, never skip, when they are
missing: CI always has them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("CAMNODE_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    p = shared_path()
    if not (p / "models").is_dir() or not (p / "media").is_dir():
        pytest.fail(f"shared footage/models not found at {p} (set CAMNODE_SHARED)")
    return p
