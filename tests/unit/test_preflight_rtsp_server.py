"""The node's own RTSP server (``[live] serve_port``) listens on the LAN: ``config check`` and
``run`` (one preflight) refuse it without a password file holding a real password, exit 2,
naming ``live.serve_password_file``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from node.cli import main


def _config(tmp_path, password: str | None, *, set_file: bool = True) -> str:
    pw = tmp_path / "viewer-password"
    if password is not None:
        pw.write_text(password)
        pw.chmod(0o600)
    live = "[live]\nserve_port = 18554\n" + (f'serve_password_file = "{pw}"\n' if set_file else "")
    f = tmp_path / "node.toml"
    f.write_text(f'[storage]\npath = "{tmp_path / "rec"}"\n\n[detect]\nenabled = false\n\n' + live)
    return str(f)


@pytest.mark.parametrize(("password", "set_file", "words"), [
    (None, False, "required when live.serve_port is set"),
    (None, True, "No such file"),
    ("", True, "at least 16 characters"),
    ("short-pass", True, "at least 16 characters"),
    ("aaaaaaaaaaaaaaaaaaaa", True, "not trivial"),
])
def test_config_check_refuses_the_rtsp_server_without_a_real_password(tmp_path, capsys, password,
                                                                      set_file, words):
    f = _config(tmp_path, password, set_file=set_file)
    assert main(["config", "check", f]) == 2
    err = capsys.readouterr().err
    assert "live.serve_password_file" in err and words in err, err


def test_a_good_password_passes_the_check(tmp_path, capsys):
    f = _config(tmp_path, "Zq3-vms-viewer-pass-8f2k")
    assert main(["config", "check", f]) == 0, capsys.readouterr().err


def test_run_refuses_it_too_before_anything_starts(tmp_path):
    r = subprocess.run([sys.executable, "-m", "node", "run", "--config", _config(tmp_path, "")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "live.serve_password_file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
