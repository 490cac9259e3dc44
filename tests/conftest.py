"""Session set-up shared by every test module.

Airflow's environment has to be in place before anything imports `airflow`, hence the call at
import time; the metadata DB is migrated lazily by the `airflow_db` fixture.

The suite runs on pytest-xdist workers (pyproject's addopts: `-n`, `--dist loadgroup`): each
module is one unit of work (its module-scoped fixtures start once), tests/web one unit (one
api-server for the package), and the units that take minutes are handed out first so that the
short ones fill the gaps. Each worker has its own Airflow home and SQLite DB (airflow_env).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import airflow_env

airflow_env.configure()


#: Loggers the CLI quiets for the whole process (cli/connection_store.quiet_libraries): a test
#: that runs the CLI in-process must not silence them for the tests after it.
CLI_QUIETED_LOGGERS = ("dropbox", "urllib3")


#: Folders whose modules share package-scoped fixtures: each is one unit of work.
SHARED_PACKAGES = ("tests/web",)

#: The units handed out first under pytest-xdist (`-n 4`), in this order; every other unit
#: follows in collection order. The long ones (real Airflow stacks, a browser, many real DAG
#: runs) start first, longest first, so that the short ones fill the gaps instead of trailing.
#: A worker starts a test only once it holds the next one, so each of the two single-test e2e
#: units takes the unit after the first four along, to run when the e2e test is done: those
#: two are short.
FIRST_UNITS = (
    "tests/e2e/test_teams.py",
    "tests/e2e/test_unattended.py",
    "tests/web",
    "tests/test_pipeline.py",
    "tests/test_timeutil.py",
    "tests/analytics/test_text.py",
    "tests/reliability/test_fault_matrix.py",
    "tests/reliability/test_damaged_files.py",
    "tests/reliability/test_all_at_once.py",
    "tests/reliability/test_kill_and_readers.py",
    "tests/hooks/test_dropbox_team.py",
    "tests/cli/test_connect.py",
    "tests/reliability/test_pseudonymise.py",
    "tests/reliability/test_secrets.py",
)


def unit_of(item: pytest.Item) -> str:
    """The unit of work `item` belongs to: its package when listed above, else its module."""
    module = item.nodeid.split("::", 1)[0]
    for package in SHARED_PACKAGES:
        if module.startswith(package + "/"):
            return package
    return module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group each test into its unit (xdist_group) and put FIRST_UNITS first (a stable sort:
    the order within a unit is unchanged)."""
    rank = {unit: n for n, unit in enumerate(FIRST_UNITS)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(unit_of(item)))
    items.sort(key=lambda item: rank.get(unit_of(item), len(FIRST_UNITS)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand the reliability figures it recorded to the controller."""
    if hasattr(session.config, "workeroutput"):
        from tests.reliability import matrix

        session.config.workeroutput["reliability_figures"] = matrix.export()


class _WorkerFigures:
    """On the xdist controller: collect each worker's reliability figures as it finishes."""

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        from tests.reliability import matrix

        matrix.merge(getattr(node, "workeroutput", {}).get("reliability_figures"))


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_WorkerFigures(), "dtl-worker-figures")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The reliability suite's fault figures (tests/reliability/matrix.py), when it ran."""
    from tests.reliability import matrix

    matrix.write_summary(terminalreporter)


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
