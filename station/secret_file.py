"""A secret kept in a file of its own: read it, or create it (mode 0600, never replacing one
another process made first) at first use. Secrets never go on command lines or into logs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The stripped contents of ``path``; when it does not exist, ``make()`` is written there
    first (the folder is created too). The new file appears whole or not at all: written 0600
    to a temporary name, synced, then linked to ``path`` (a link never replaces a file another
    process made first; a crash leaves no empty secret behind, only a stray temporary)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(make() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError:  # a file system without hard links: renamed into place instead, if
                if not path.exists():  # still absent (two first starts at once: the last wins)
                    os.replace(tmp, path)
            _sync_dir(path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return path.read_text().strip()


def _sync_dir(folder: Path) -> None:
    """The new name is on the disk too (else a power cut could lose the file and a new secret
    would be made at the next start, unlike the one already handed out)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
