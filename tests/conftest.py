"""Session set-up shared by every test module.

Airflow's environment has to be in place before anything imports `airflow`, hence the call at
import time; the metadata DB is migrated lazily by the `airflow_db` fixture.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import airflow_env

airflow_env.configure()


#: Loggers the CLI quiets for the whole process (cli/connection_store.quiet_libraries): a test
#: that runs the CLI in-process must not silence them for the tests after it.
CLI_QUIETED_LOGGERS = ("dropbox", "urllib3")


@pytest.fixture(autouse=True)
def _restore_quieted_loggers() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in CLI_QUIETED_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB for this session; returns AIRFLOW_HOME."""
    return airflow_env.migrate()


@pytest.fixture
def transcript(capsys):
    """Everything shown to a user or a log reader during the test, for the secret checks."""
    from tests.helpers.connecting import Transcript

    return Transcript(capsys)


@pytest.fixture
def spy(monkeypatch):
    """Records every token the SDK obtains, so tests can prove none is ever shown."""
    from tests.helpers.connecting import TokenSpy

    return TokenSpy(monkeypatch)


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp dir, for this test: a spool must leave nothing in it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
