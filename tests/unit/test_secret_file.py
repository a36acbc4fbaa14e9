"""The one secret-file helper behind the console's session key and the live-view secret."""

from __future__ import annotations

import stat

import pytest

from station.console.run import read_secret
from station.live.credentials import load_secret
from station.secret_file import read_or_create


def test_created_once_0600_then_read_back(tmp_path):
    path = tmp_path / "sub" / "key"
    first = read_or_create(path, lambda: "one")
    assert first == "one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create(path, lambda: "two") == "one"  # an existing secret is never replaced


def test_console_and_live_secrets_use_it(tmp_path):
    key = read_secret(tmp_path / "console.secret")
    assert len(key) >= 32 and read_secret(tmp_path / "console.secret") == key
    live = load_secret(tmp_path / "station")
    assert len(live) == 64 and load_secret(tmp_path / "station") == live
    assert stat.S_IMODE((tmp_path / "station" / "live-secret").stat().st_mode) == 0o600


def test_a_short_console_secret_is_refused(tmp_path):
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ValueError, match="too short"):
        read_secret(tmp_path / "short")
