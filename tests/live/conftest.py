"""Fixtures of the live tests (see :mod:`tests.live.rig`)."""

import pytest

from tests.live.rig import make_rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    yield from make_rig(tmp_path_factory)
