"""Where the report reads and writes, from Airflow's settings, and the report DAG's task body.

Dataset root: the same setting the sync DAGs write to (Variable `dropbox_team_log_output`, e.g.
via AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT, else the project default). Report file: Variable
`dropbox_team_log_report_path` (a local path or an fsspec URL), else
`<root>/_reports/dropbox_team_log_report.html` (day readers glob `event_date=*/*.parquet` and
pyarrow/Spark skip `_`-prefixed folders, so the report never disturbs them).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from dropbox_team_log.analytics import report

REPORT_PATH_VARIABLE = "dropbox_team_log_report_path"

log = logging.getLogger(__name__)


def output_root() -> str:
    """The dataset root the sync DAGs write to (imports Airflow: call only when needed)."""
    from dropbox_team_log.tasks import sync_tasks as dag_tasks

    return dag_tasks.output_root()


def report_path(root: str) -> str:
    from airflow.sdk import Variable

    return Variable.get(REPORT_PATH_VARIABLE, default=None) or report.default_report_path(root)


def render(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The report DAG's task: the last `days` days up to the run's day, written and logged.

    The period ends on the day of the run's logical date, or of its `run_after` when it has
    none (asset-triggered runs), so a replayed run renders the same period.
    """
    when = context.get("logical_date") or context["dag_run"].run_after
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    period = report.resolve_period(
        days=int(params.get("days") or report.DEFAULT_DAYS), today=when.astimezone(UTC).date()
    )
    root = output_root()
    out = report_path(root)
    data = report.build(root, period)
    log.info("Report of %s:\n%s", period.label(), report.report_text(data))
    path = report.write_text(out, report.render_html(data))
    log.info("Report written to %s", path)
    metrics = {m.name: m.current for m in data.metrics}
    return {
        "path": path,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "events": metrics["events"],
    }
