"""Fixtures of the reliability suite, and the fault figures printed at the end of the session
(also written as JSON + markdown under RELIABILITY_SUMMARY_DIR, default a folder under /tmp).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.reliability.matrix import EMULATOR, conn_json, write_summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write_summary(terminalreporter)


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(**EMULATOR) as emu:
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
