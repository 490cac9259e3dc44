"""A throwaway Airflow home + SQLite metadata DB for the test session.

Airflow reads its configuration once, when `airflow` is first imported, so `configure()` must run
before any test module imports it: tests/conftest.py calls it at import time. The DB is migrated
once per session (`migrate()`), lazily, by the `airflow_db` fixture, so pure unit tests do not pay
for it. Subprocesses (`airflow ...`, `dropbox-team-log ...`) inherit the same environment.
Each pytest-xdist worker gets a home and DB of its own: a worker inherits the controller's
environment, so the home is claimed per worker id, not merely per environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers.paths import REPO

VENV_BIN = Path(sys.executable).parent
_MARK = "DROPBOX_TEAM_LOG_TEST_AIRFLOW_HOME"
_OWNER = "DROPBOX_TEAM_LOG_TEST_AIRFLOW_HOME_OWNER"
_migrated = False


def configure() -> Path:
    """Set the env for a private Airflow home (idempotent); return AIRFLOW_HOME."""
    owner = os.environ.get("PYTEST_XDIST_WORKER", "")
    existing = os.environ.get(_MARK)
    if existing and os.environ.get(_OWNER, "") == owner:
        return Path(existing)
    if "airflow" in sys.modules:
        raise RuntimeError("airflow was imported before tests/airflow_env.configure() ran")
    home = Path(tempfile.mkdtemp(prefix="dtl-airflow-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    from cryptography.fernet import Fernet  # a dependency of Airflow; does not import airflow

    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        _MARK: str(home),
        _OWNER: owner,
    }
    os.environ.update(env)
    # A developer's real connection must never leak into (or be overwritten by) the tests.
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_"):
            del os.environ[name]
    # Console scripts of the venv (airflow, dropbox-team-log) first on PATH for subprocesses.
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return home


def migrate() -> Path:
    """`airflow db migrate` once per process, in a subprocess (a clean config load)."""
    global _migrated
    home = configure()
    if not _migrated:
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            capture_output=True,
            text=True,
            timeout=300,
            env=os.environ.copy(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")
        _migrated = True
    return home
