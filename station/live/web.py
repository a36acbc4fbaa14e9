"""The browser side of live view: the page URL a person (or the web console) opens."""

from __future__ import annotations

import json
from pathlib import Path


def browser_url(state_dir: Path, node: str, stream: str) -> str:
    """The player page of one pole's stream, as the running relay serves it."""
    data = json.loads((state_dir / "relay.json").read_text())
    web = data.get("web")
    if not web:
        return "(no browser gateway running)"
    from station.live.credentials import load_secret
    from station.live.janus import browser_key

    return f"{web}/live.html?node={node}&stream={stream}#key={browser_key(load_secret(state_dir))}"
