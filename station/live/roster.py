"""Which nodes may publish to the relay: the ward registry's nodes provisioned with live view.

``camnode-provision node --relay … --live-secret …`` marks the node in the ward's ``ward.json``
(``users.<id>.live``; the file holds no secrets). The relay takes its publisher accounts from
a copy of that file (``camnode-station relay --ward ward.json``), so a node provisioned later
needs no hand-kept list, and a retired node (stolen pole) loses its account at the relay's next
start or reload: its derived password stays valid for the station's secret, the account does
not.
"""

from __future__ import annotations

import json
from pathlib import Path

#: the registry's format tag (provisioning.ward.FORMAT)
WARD_FORMAT = "camnode-ward-1"


class RosterError(ValueError):
    """The ward file cannot be read as a ward registry; says which file and why."""


def live_nodes(ward_file: Path) -> list[str]:
    """The active nodes of ``ward_file`` (``ward.json``, or the ward's folder) provisioned with
    live view, sorted."""
    path = Path(ward_file)
    if path.is_dir():
        path = path / "ward.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise RosterError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise RosterError(f"{path}: not JSON ({exc})") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict) or data.get("format") != WARD_FORMAT:
        raise RosterError(f"{path}: not a camnode ward file (ward.json of camnode-provision)")
    return sorted(name for name, u in users.items()
                  if isinstance(u, dict) and u.get("role") == "node" and u.get("state") == "active"
                  and u.get("live"))
