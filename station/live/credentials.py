"""Stream credentials: one secret at the station, one password per node derived from it.

A node's stream password is ``HMAC-SHA256(secret, "node:" + id)``: provisioning computes it for
the node's ``[live] password_file``, the relay for its publisher account, and nothing has to
keep a list of passwords in step. The relay's readers (the station's console, a VMS) use the
viewer account ``station`` with ``HMAC(secret, "viewer:station")``. The secret lives in
``<station dir>/live-secret`` (mode 0600, created on first use).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from station.secret_file import read_or_create

VIEWER = "station"


def station_dir(given: str | None = None) -> Path:
    """The station's state directory: ``given``, else ``$CAMNODE_STATION_DIR``, else
    ``var/station`` — in the working directory, or beside the source tree (``make run`` from
    the repository, a console command from elsewhere)."""
    chosen = given or os.environ.get("CAMNODE_STATION_DIR")
    if chosen:
        return Path(chosen)
    here = Path("var/station")
    beside = Path(__file__).resolve().parents[2] / "var" / "station"
    if not (here / "relay.json").exists() and (beside / "relay.json").exists():
        return beside
    return here


#: what ``load_secret`` creates: 64 hex characters; a shorter secret is refused when read back
MIN_SECRET = 32


def load_secret(directory: Path) -> bytes:
    """The station's secret, created (64 hex characters, 0600) at first use. Raises
    ``ValueError`` for a secret that is there but is none (empty, short, trivial): every password
    derived from it would be one anyone can compute."""
    path = Path(directory) / "live-secret"
    return _checked(path, read_or_create(path, lambda: secrets.token_hex(32)))


def read_secret(path: Path) -> bytes:
    """An existing station secret file (``<station dir>/live-secret``), read as
    :func:`load_secret` reads it, never created: what provisioning derives a node's password
    from. Raises ``ValueError`` (the reason) for a missing, unreadable, or too short secret."""
    path = Path(path)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (the station's live-secret)") from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not text (the station's live-secret is 64 hex characters)") from None
    return _checked(path, text)


def _checked(path: Path, text: str) -> bytes:
    if len(text) < MIN_SECRET or len(set(text)) < 8:
        raise ValueError(f"{path}: {len(text)} characters, not a station secret (at least {MIN_SECRET}, "
                         "not trivial: the station writes 64 hex characters)")
    return text.encode()


def _derive(secret: bytes, label: str) -> str:
    return hmac.new(secret, label.encode(), hashlib.sha256).hexdigest()[:32]


def node_password(secret: bytes, node_id: str) -> str:
    return _derive(secret, f"node:{node_id}")


def viewer_password(secret: bytes, user: str = VIEWER) -> str:
    return _derive(secret, f"viewer:{user}")
