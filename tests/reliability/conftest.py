"""Fixtures of the reliability suite. The fault figures its tests record are printed at the end
of the session by tests/conftest.py (the only conftest a pytest-xdist controller loads).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dropbox_team_log.settings import TEAMS_VARIABLE
from tests.helpers.connecting import delete_variable
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
    """The team of the default connection: the only one the DAGs run when no team is
    registered (a module that ran `connect` before on this worker may have left a registry)."""
    delete_variable(TEAMS_VARIABLE)
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", conn_json(emu))
    yield
    mp.undo()


@pytest.fixture
def output(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "dataset"
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
    return root
