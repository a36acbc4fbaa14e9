"""Secrets in files of their own: created whole or not at all (0600), never replacing one
another process made first; a station secret that is there but is none is refused."""

from __future__ import annotations

import multiprocessing
import stat

import pytest

from station.cli import main as station
from station.live.credentials import load_secret
from station.secret_file import read_or_create


def test_created_0600_once_and_then_read(tmp_path):
    path = tmp_path / "deep" / "key"
    first = read_or_create(path, lambda: "k" * 40)
    assert first == "k" * 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create(path, lambda: "other") == first  # never replaced
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no temporary left


def test_a_crash_while_making_it_leaves_no_empty_secret(tmp_path):
    path = tmp_path / "key"

    def dies() -> str:
        raise KeyboardInterrupt  # the process stops between creating and writing

    with pytest.raises(KeyboardInterrupt):
        read_or_create(path, dies)
    assert not path.exists()  # (an O_EXCL create left an empty file: an empty HMAC key)
    assert read_or_create(path, lambda: "fresh-secret") == "fresh-secret"


def _race(path: str, value: str, out) -> None:
    from pathlib import Path

    out.put(read_or_create(Path(path), lambda: value))


def test_processes_racing_to_make_it_all_read_the_same(tmp_path):
    path = str(tmp_path / "key")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, f"secret-of-{i}", out)) for i in range(6)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert len(set(got)) == 1 and got[0].startswith("secret-of-"), got


@pytest.mark.parametrize("content", ["", "\n", "abc", "a" * 64])
def test_a_station_secret_that_is_none_is_refused(tmp_path, capsys, content):
    (tmp_path / "live-secret").write_text(content)
    with pytest.raises(ValueError, match="not a station secret"):
        load_secret(tmp_path)
    assert station(["live-secret", "--station-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("camnode-station: ") and "not a station secret" in err and "\n" not in err
    assert (tmp_path / "live-secret").read_text() == content  # left for a person to look at
