"""Session set-up shared by every test module.

Airflow's environment has to be in place before anything imports `airflow`, hence the call at
import time; the metadata DB is migrated lazily by the `airflow_db` fixture.

`make test` runs the suite on pytest-xdist workers (`-n 3`), a module or a shared package
per worker at a time, the long ones first (tests/helpers/parallel.py). Each worker has
its own Airflow home and SQLite DB (airflow_env).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import airflow_env, parallel

airflow_env.configure()


#: Loggers the CLI quiets for the whole process (cli/connection_store.quiet_libraries): a test
#: that runs the CLI in-process must not silence them for the tests after it.
CLI_QUIETED_LOGGERS = ("dropbox", "urllib3")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: the long units first (tests/helpers/parallel.py). A run without
    workers keeps the plain collection order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = [items[i] for i in parallel.order([item.nodeid for item in items])]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """On an xdist worker, any test but an e2e one runs at a lower CPU priority (and so do the
    processes it starts): the e2e tests prove a deployment's timeliness (a light team synced
    within one schedule interval while a heavy backfill runs), which the rest of the suite
    running beside it must not starve."""
    if os.environ.get("PYTEST_XDIST_WORKER") and item.get_closest_marker("e2e") is None:
        parallel.yield_cpu()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return parallel.make_scheduler(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand the reliability figures it recorded to the controller."""
    if hasattr(session.config, "workeroutput"):
        from tests.reliability import matrix

        session.config.workeroutput["reliability_figures"] = matrix.export()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the xdist controller: collect each worker's reliability figures as it finishes."""
    from tests.reliability import matrix

    matrix.merge(getattr(node, "workeroutput", {}).get("reliability_figures"))


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
