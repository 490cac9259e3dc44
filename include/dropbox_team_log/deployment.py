"""What this deployment is set to: the Airflow Variables of `settings`, read with their defaults.

Used by the tasks and by the CLI alike, so both find the same dataset, report and connection.
Airflow is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dropbox_team_log import settings


def _variable(name: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(name, default=None)


def default_output_root() -> str:
    """`<project>/data/dropbox_team_log` in a checkout (beside `dags/`), else in AIRFLOW_HOME."""
    project = Path(__file__).resolve().parents[2]
    if (project / "dags").is_dir():
        return str(project / "data" / "dropbox_team_log")
    home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
    return str(home / "data" / "dropbox_team_log")


def output_root() -> str:
    """The dataset root: Variable `dropbox_team_log_output`, else `default_output_root()`."""
    return _variable(settings.OUTPUT_VARIABLE) or default_output_root()


def default_report_path(root: str) -> str:
    """`<root>/_reports/dropbox_team_log_report.html`: beside the data, outside its glob."""
    return f"{str(root).rstrip('/')}/{settings.REPORTS_DIR}/{settings.REPORT_FILE}"


def report_path(root: str) -> str:
    """Where the report goes: Variable `dropbox_team_log_report_path`, else beside the data."""
    return _variable(settings.REPORT_PATH_VARIABLE) or default_report_path(root)


def conn_id(params: dict[str, Any]) -> str:
    """The team's connection: the run's `conn_id` param, the Variable, else the default."""
    return params.get("conn_id") or _variable(settings.CONN_ID_VARIABLE) or settings.DEFAULT_CONN_ID


def pseudonymise_key_setting() -> str | None:
    """The raw value of the pseudonymisation Variable (a key, `conn:<id>`, or None: off)."""
    return _variable(settings.PSEUDONYMISE_KEY_VARIABLE)


def detections_setting() -> str | None:
    """The raw JSON of the detections Variable (knob overrides), or None: the defaults."""
    return _variable(settings.DETECTIONS_VARIABLE)
