"""The system tests boot whole virtual machines: they run with ``make test-system`` (CI's reduced
set: ``CAMNODE_SYSTEM=ci``) or ``make soak-system``, not in ``make test``'s unit/integration run.

First boot runs once per session (``ward``: the installer's path, flashing included); each test
module then boots its own copy of the card as it was after first boot (``node``), so a module's
power cuts, full card or cut link never reach another module's node.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: modules too long for CI's reduced set (``CAMNODE_SYSTEM=ci``): only ``make soak-system`` runs them
SOAK_ONLY = ["test_vm_link.py"]
_MODE = os.environ.get("CAMNODE_SYSTEM")
collect_ignore_glob = ["test_*.py"] if not _MODE else [] if _MODE == "soak" else SOAK_ONLY


@pytest.fixture(scope="session")
def ward(tmp_path_factory) -> Iterator:
    from tests.system.nodevm import install

    w = install(Path(tmp_path_factory.mktemp("ward")))
    print(f"\nfirst boot (install + reboot) {w.first_boot_s:.0f} s")
    yield w
    w.broker.stop()


@pytest.fixture(scope="module")
def node(ward, tmp_path_factory) -> Iterator:
    from tests.system.nodevm import boot

    n = boot(ward, Path(tmp_path_factory.mktemp("node")))
    print(f"\nboot of a copy of the first-booted card to its first heartbeat {n.boot_s:.0f} s")
    yield n
    n.close()
