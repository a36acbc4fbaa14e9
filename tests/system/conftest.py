"""The system tests boot whole virtual machines. Which modules run is set by ``CAMNODE_SYSTEM``:
``ci`` (``make test``, ``make test-system``: CI's reduced set), ``soak`` (``make soak-system``:
everything), ``arm64`` (``make test-system-arm64``: the arm64 card only); unset, none.

First boot runs once per session (``ward``: the installer's path, flashing included); each test
module then boots its own copy of the card as it was after first boot (``node``), so a module's
power cuts, full card or cut link never reach another module's node.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: modules too long for CI's reduced set: only ``make soak-system`` runs them
SOAK_ONLY = ("test_vm_link.py", "test_vm_wear.py")
#: arm64 under software emulation (~20 min the first time): its own target and the soak
ARM64 = ("test_vm_arm64.py",)
_MODE = os.environ.get("CAMNODE_SYSTEM", "")
_SKIPPED = {
    "ci": [*SOAK_ONLY, *ARM64],
    "soak": [],
    "arm64": [p.name for p in Path(__file__).parent.glob("test_*.py") if p.name not in ARM64],
    "": ["test_*.py"],
}
if _MODE not in _SKIPPED:  # a typo would otherwise run no system test and say nothing
    raise pytest.UsageError(f"CAMNODE_SYSTEM={_MODE!r}: one of ci, soak, arm64 (or unset: none)")
collect_ignore_glob = _SKIPPED[_MODE]

#: what the system tests measured, printed at the end of the run whatever pytest captured
FIGURES: list[str] = []
#: a VM test's own limit (first boot, whole campaigns) instead of the suite's per-test default;
#: a longer ``--timeout`` on the command line (``make soak-system``) wins
TIMEOUT_S = 3600


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    limit = max(TIMEOUT_S, config.getoption("timeout", None) or 0)
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.timeout(limit))


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("what the system tests measured")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def figure():
    """``figure("watchdog: ...")``: a measured figure for the run's summary (and the issue note)."""
    def record(line: str) -> None:
        FIGURES.append(line)
        print(line)
    return record


@pytest.fixture(scope="session")
def ward(tmp_path_factory, figure) -> Iterator:
    from tests.system.nodevm import install

    w = install(Path(tmp_path_factory.mktemp("ward")))
    figure(f"first boot (install + reboot) {w.first_boot_s:.0f} s")
    yield w
    w.broker.stop()


@pytest.fixture(scope="module")
def node(ward, tmp_path_factory, figure, request) -> Iterator:
    from tests.system.nodevm import boot

    n = boot(ward, Path(tmp_path_factory.mktemp("node")))
    figure(f"{request.module.__name__.rpartition('.')[2]}: boot of a copy of the first-booted card to "
           f"its first heartbeat {n.boot_s:.0f} s")
    yield n
    n.close()
