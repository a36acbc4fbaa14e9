"""A secret kept in a file of its own: read it, or create it (mode 0600, never replacing one
another process made first) at first use. Secrets never go on command lines or into logs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The stripped contents of ``path``; when it does not exist, ``make()`` is written there
    first (the folder is created too)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it between our check and now: use theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(make() + "\n")
    return path.read_text().strip()
