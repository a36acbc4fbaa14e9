"""The system tests boot whole virtual machines: they run with ``make test-system`` (CI's reduced
set: ``CAMNODE_SYSTEM=ci``) or ``make soak-system``, not in ``make test``'s unit/integration run."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("CAMNODE_SYSTEM") else ["test_*.py"]
