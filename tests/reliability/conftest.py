"""Fixtures of the reliability suite. The fault figures its tests record are printed at the end
of the session by tests/conftest.py (the only conftest a pytest-xdist controller loads).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.matrix import EMULATOR, conn_json


@pytest.fixture(scope="module")
def emu(request: pytest.FixtureRequest):
    """The module's emulator: matrix.EMULATOR, with the module's EMULATOR_OVERRIDES if any."""
    from dropbox_emulator import running_emulator

    overrides = getattr(request.module, "EMULATOR_OVERRIDES", {})
    with running_emulator(**{**EMULATOR, **overrides}) as emu:
        yield emu


@pytest.fixture(scope="module")
def connected(emu, airflow_db):
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", conn_json(emu))
    yield
    mp.undo()


@pytest.fixture
def output(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "dataset"
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
    return root
