"""Session set-up shared by every test module.

Airflow's environment has to be in place before anything imports `airflow`, hence the call at
import time; the metadata DB is migrated lazily by the `airflow_db` fixture.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import airflow_env

airflow_env.configure()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB for this session; returns AIRFLOW_HOME."""
    return airflow_env.migrate()
